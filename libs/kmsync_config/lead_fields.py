"""Which Kaltura registration data fills which Marketo lead field, per event (issue #16).

The tenants file's ``events[].lead_fields`` maps a Marketo lead field API name to a source:
``kaltura:<attribute>`` (a registrant attribute Kaltura's ``user.list`` returns, read into
``AttendeeStatus``; docs/reference/kaltura-api.md §10) or ``form:<profileData key>`` (a
registration-form answer, by the key exactly as it appears in the User Profile's ``profileData``:
kmsync never guesses a key, since that the keys are the form's property names is UNCONFIRMED).
The standard person fields (docs/reference/marketo-api.md §14) are mapped by default; an entry
replaces a default, and a default set to ``null`` is not written at all. Design:
docs/design/granular-statuses.md §3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator

#: ``kaltura:<name>`` sources: the AttendeeStatus attribute each one reads.
KALTURA_ATTRIBUTES: tuple[str, ...] = ("first_name", "last_name", "title", "company", "country")
#: Marketo's standard person fields a registration fills (docs/reference/marketo-api.md §14) and
#: where each comes from unless the event says otherwise.
DEFAULT_LEAD_FIELDS: dict[str, str] = {
    "firstName": "kaltura:first_name",
    "lastName": "kaltura:last_name",
    "title": "kaltura:title",
    "company": "kaltura:company",
    "country": "kaltura:country",
}
#: The lead's identity (the lookup field of every upsert): written from Kaltura's email, never mapped.
RESERVED_LEAD_FIELDS = frozenset({"email", "id"})
#: A Marketo REST API name: letters, digits and underscores, starting with a letter.
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class LeadSource:
    """Where one lead field's value comes from."""

    kind: Literal["kaltura", "form"]
    #: The AttendeeStatus attribute (kaltura) or the profileData key (form).
    key: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"


def parse_source(text: str) -> LeadSource:
    """``kaltura:title`` or ``form:jobFunction`` → LeadSource; ValueError says what is allowed."""
    kind, sep, key = text.partition(":")
    allowed = ", ".join(f"kaltura:{a}" for a in KALTURA_ATTRIBUTES)
    if not sep or kind not in ("kaltura", "form"):
        raise ValueError(f"{text!r} is not a source: use one of {allowed}, or form:<profileData key>")
    if kind == "kaltura":
        if key not in KALTURA_ATTRIBUTES:
            raise ValueError(f"{text!r}: Kaltura gives no {key!r}; use one of {allowed}")
        return LeadSource("kaltura", key)
    if not key.strip() or key != key.strip():
        raise ValueError(f"{text!r}: give the registration form field's profileData key after 'form:', "
                         "exactly as Kaltura stores it (no spaces around it)")
    return LeadSource("form", key)


def _check_name(name: str) -> str:
    if name in RESERVED_LEAD_FIELDS:
        raise ValueError(f"{name!r} is the lead's identity (kmsync writes it from Kaltura's email); "
                         "it cannot be mapped")
    if not _API_NAME.match(name):
        raise ValueError(f"{name!r} is not a Marketo lead field API name (letters, digits and _, starting with a "
                         "letter; see Admin > Field Management or `kmsync marketo check`)")
    return name


def _check_source(text: str | None) -> str | None:
    if text is not None:
        parse_source(text)
    return text


LeadFieldName = Annotated[str, AfterValidator(_check_name)]
SourceText = Annotated[str | None, AfterValidator(_check_source)]


def effective_lead_fields(overrides: dict[str, str | None]) -> dict[str, LeadSource]:
    """The defaults with an event's entries applied: an entry replaces the default of its field,
    ``None`` removes it. Marketo field API name → source, defaults first."""
    merged: dict[str, str | None] = {**DEFAULT_LEAD_FIELDS, **overrides}
    return {name: parse_source(text) for name, text in merged.items() if text is not None}
