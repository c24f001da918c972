"""Program member fields as instance state: the standard ones of the describe example and the custom
ones an instance defines, at most 20 (docs/reference/marketo-api.md §13.1–§13.3)."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: §13.1/§13.2: "up to 20 custom fields".
MAX_CUSTOM_MEMBER_FIELDS = 20
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DATA_TYPES = frozenset({"boolean", "date", "datetime", "float", "integer", "string", "url"})


@dataclass
class MemberField:
    name: str
    display_name: str
    data_type: str
    length: int | None
    updateable: bool
    custom: bool
    description: str = ""
    api_created: bool = False


#: The standard fields of the docs' describe example (§13.3); statusReason updateable since 2023-01 (§13.5).
STANDARD_MEMBER_FIELDS: tuple[MemberField, ...] = tuple(
    MemberField(name, name, data_type, length, name in ("statusReason", "waitlistPriority"), False)
    for name, data_type, length in (
        ("acquiredBy", "boolean", None), ("attendanceLikelihood", "integer", None), ("createdAt", "datetime", None),
        ("isExhausted", "boolean", None), ("leadId", "integer", None), ("membershipDate", "datetime", None),
        ("nurtureCadence", "string", 4), ("program", "string", 255), ("programId", "integer", None),
        ("reachedSuccess", "boolean", None), ("reachedSuccessDate", "datetime", None),
        ("registrationLikelihood", "integer", None), ("statusName", "string", 255), ("statusReason", "string", 255),
        ("trackName", "string", 255), ("updatedAt", "datetime", None), ("waitlistPriority", "integer", None),
    ))
STANDARD_BY_NAME = {f.name: f for f in STANDARD_MEMBER_FIELDS}


def add_member_field(custom: dict[str, MemberField], name: str, display_name: str, data_type: str, length: int | None = None,
                     *, description: str = "", api_created: bool = False) -> MemberField:
    """Define a custom program member field (seeding, or the create endpoint). ValueError when refused."""
    if not _API_NAME.match(name):
        raise ValueError(f"Invalid name '{name}': letters, digits and _ only, starting with a letter")
    if data_type not in _DATA_TYPES:
        raise ValueError(f"Invalid dataType '{data_type}'")
    if name in STANDARD_BY_NAME or name in custom or any(f.display_name == display_name for f in custom.values()):
        raise ValueError(f"Field '{name}' already exists")
    if len(custom) >= MAX_CUSTOM_MEMBER_FIELDS:
        raise ValueError(f"At most {MAX_CUSTOM_MEMBER_FIELDS} custom program member fields")
    field = MemberField(name, display_name, data_type, length if data_type == "string" else None, True, True,
                        description, api_created)
    if data_type == "string" and field.length is None:
        field.length = 255  # the docs' example shows 255 for a custom string (§13.3)
    custom[name] = field
    return field
