"""Field catalogue for leads and value checks by Marketo data type (docs/reference/marketo-api.md §5.3, field types)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class LeadField:
    name: str
    display_name: str
    data_type: str
    length: int | None = None
    read_only: bool = False
    searchable: bool = False  # may be a filterType / lookupField
    id: int = 0
    custom: bool = False


_STD: list[tuple[str, str, str, int | None, bool, bool]] = [
    # name, display name, type, length, read-only, searchable
    ("id", "Id", "integer", None, True, True),
    ("email", "Email Address", "email", 255, False, True),
    ("firstName", "First Name", "string", 255, False, False),
    ("middleName", "Middle Name", "string", 255, False, False),
    ("lastName", "Last Name", "string", 255, False, False),
    ("salutation", "Salutation", "string", 255, False, False),
    ("title", "Job Title", "string", 255, False, False),
    ("company", "Company Name", "string", 255, False, False),
    ("industry", "Industry", "string", 255, False, False),
    ("phone", "Phone Number", "phone", 255, False, False),
    ("mobilePhone", "Mobile Phone Number", "phone", 255, False, False),
    ("address", "Address", "text", 65535, False, False),
    ("city", "City", "string", 255, False, False),
    ("state", "State", "string", 255, False, False),
    ("country", "Country", "string", 255, False, False),
    ("postalCode", "Postal Code", "string", 255, False, False),
    ("website", "Website", "url", 255, False, False),
    ("leadSource", "Person Source", "string", 255, False, False),
    ("leadStatus", "Person Status", "string", 255, False, False),
    ("leadScore", "Lead Score", "integer", None, False, False),
    ("numberOfEmployees", "Num Employees", "integer", None, False, False),
    ("annualRevenue", "Annual Revenue", "currency", None, False, False),
    ("unsubscribed", "Unsubscribed", "boolean", None, False, False),
    ("emailInvalid", "Email Invalid", "boolean", None, False, False),
    ("doNotCall", "Do Not Call", "boolean", None, False, False),
    ("cookies", "Cookies", "string", 255, False, True),
    ("twitterId", "Twitter Id", "string", 255, False, True),
    ("facebookId", "Facebook Id", "string", 255, False, True),
    ("linkedInId", "LinkedIn Id", "string", 255, False, True),
    ("sfdcAccountId", "SFDC Account Id", "string", 18, False, True),
    ("sfdcContactId", "SFDC Contact Id", "string", 18, False, True),
    ("sfdcLeadId", "SFDC Lead Id", "string", 18, False, True),
    ("sfdcLeadOwnerId", "SFDC Lead Owner Id", "string", 18, False, True),
    ("sfdcOpptyId", "SFDC Oppty Id", "string", 18, False, True),
    ("leadPartitionId", "Lead Partition Id", "integer", None, True, True),
    ("externalCompanyId", "External Company Id", "string", 100, False, False),
    ("externalSalesPersonId", "External Sales Person Id", "string", 100, False, False),
    ("createdAt", "Created At", "datetime", None, True, False),
    ("updatedAt", "Updated At", "datetime", None, True, False),
]

STANDARD_LEAD_FIELDS: list[LeadField] = [
    LeadField(name=n, display_name=d, data_type=t, length=ln, read_only=ro, searchable=s, id=i + 1)
    for i, (n, d, t, ln, ro, s) in enumerate(_STD)
]

# Custom string/email/integer fields are searchable too (docs/reference/marketo-api.md §5.2).
SEARCHABLE_CUSTOM_TYPES = frozenset({"string", "email", "integer"})


def custom_lead_field(name: str, display_name: str | None, data_type: str, length: int | None,
                      field_id: int) -> LeadField:
    if length is None and data_type in ("string", "email", "phone", "url"):
        length = 255
    return LeadField(name=name, display_name=display_name or name, data_type=data_type, length=length,
                     searchable=data_type in SEARCHABLE_CUSTOM_TYPES, id=field_id, custom=True)

DEFAULT_LEAD_FIELDS = ["id", "email", "updatedAt", "createdAt", "firstName", "lastName"]  # §5.2

DATA_TYPES = ("string", "boolean", "integer", "float", "link", "email", "currency", "date", "datetime",
              "phone", "text", "url", "percent", "score", "reference")


class InvalidValue(ValueError):
    def __init__(self, value: Any, data_type: str) -> None:
        self.value = value
        self.data_type = data_type
        super().__init__(f"Invalid value '{value}'. Required of type '{data_type}'")  # code 1001


class TooLong(InvalidValue):
    """A string longer than its field (→ 1001 by default; BehaviourConfig.over_length)."""

    def __init__(self, value: Any, data_type: str, limit: int, unit: str) -> None:
        super().__init__(value, data_type)
        self.args = (f"Invalid value for a '{data_type}' field: longer than {limit} {unit}",)


#: docs/reference/marketo-api.md §5.3 field types: string 255 characters, text 30,000 bytes (a field's describe
#: ``length`` lowers the string limit, §8.1).
STRING_MAX_CHARS = 255
TEXT_MAX_BYTES = 30_000
CHAR_TYPES = frozenset({"string", "email", "phone", "url"})


def coerce(value: Any, data_type: str, length: int | None = None, over_length: str = "reject") -> Any:
    """Normalise ``value`` for ``data_type``; raise InvalidValue (→ 1001) if it does not fit.

    ``None`` and ``""`` store null (docs/reference/marketo-api.md §5.1). Strings longer than the field (``length``
    characters, else 255; text: 30,000 bytes) raise ``TooLong``, or are cut when ``over_length`` is
    "truncate" (what Marketo does is UNCONFIRMED).
    """
    if value is None or value == "":
        return None
    if data_type in ("integer", "score", "link"):
        return _integer(value, data_type)
    if data_type in ("float", "currency", "percent"):
        return _number(value, data_type)
    if data_type == "boolean":
        return _boolean(value, data_type)
    if data_type in ("date", "datetime"):
        return _date(value, data_type)
    return _text(value, data_type, length, over_length)


def _integer(value: Any, data_type: str) -> int:
    if isinstance(value, bool):
        raise InvalidValue(value, data_type)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise InvalidValue(value, data_type) from None
    raise InvalidValue(value, data_type)


def _number(value: Any, data_type: str) -> float:
    if isinstance(value, bool):
        raise InvalidValue(value, data_type)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise InvalidValue(value, data_type) from None
    raise InvalidValue(value, data_type)


def _boolean(value: Any, data_type: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidValue(value, data_type)


def _date(value: Any, data_type: str) -> str:
    """A date (``YYYY-MM-DD``) or a datetime (ISO-8601), stored as sent."""
    if not isinstance(value, str):
        raise InvalidValue(value, data_type)
    if data_type == "datetime":
        parse_datetime(value, data_type)
        return value
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise InvalidValue(value, data_type) from None
    return value


def _text(value: Any, data_type: str, length: int | None, over_length: str) -> str:
    """Every other type as text, within the field's length (characters) or text's 30,000 bytes."""
    if isinstance(value, dict | list):
        raise InvalidValue(value, data_type)
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    if data_type in CHAR_TYPES:
        limit = min(length or STRING_MAX_CHARS, STRING_MAX_CHARS)
        if len(text) > limit:
            if over_length != "truncate":
                raise TooLong(value, data_type, limit, "characters")
            text = text[:limit]
    elif data_type == "text":
        limit = min(length or TEXT_MAX_BYTES, TEXT_MAX_BYTES)
        raw = text.encode()
        if len(raw) > limit:
            if over_length != "truncate":
                raise TooLong(value, data_type, limit, "bytes")
            text = raw[:limit].decode(errors="ignore")
    return text


def parse_datetime(value: str, data_type: str = "datetime") -> float:
    """ISO-8601 → epoch seconds. A value without an offset is taken as UTC."""
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise InvalidValue(value, data_type) from None
    if dt.tzinfo is None:
        from datetime import UTC

        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
