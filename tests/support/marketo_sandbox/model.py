"""What a Marketo instance stores. Plain dataclasses; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Lead:
    id: int
    values: dict[str, Any]
    created: float
    updated: float


@dataclass(frozen=True)
class ProgressionStatus:
    name: str
    step: int
    success: bool = False
    hidden: bool = False
    description: str | None = None


@dataclass
class Channel:
    id: int
    name: str
    applicable_program_type: str
    statuses: list[ProgressionStatus]
    created: float
    updated: float

    def status(self, name: str) -> ProgressionStatus | None:
        # Exact, case-sensitive match (docs/reference/marketo-api.md §6.2 recommendation; UNCONFIRMED).
        for s in self.statuses:
            if s.name == name:
                return s
        return None


@dataclass
class Program:
    id: int
    name: str
    type: str
    channel: str
    description: str
    created: float
    updated: float
    folder_id: int = 1


@dataclass
class Member:
    program_id: int
    lead_id: int
    status_name: str
    step: int
    reached_success: bool
    membership_date: float
    updated: float
    acquired_by: bool = False
    reached_success_date: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Attribute:
    api_name: str
    name: str
    data_type: str = "string"
    description: str | None = None
    is_primary: bool = False
    #: Characters for string types (None: Marketo's 255, docs/reference/marketo-api.md §5.3).
    length: int | None = None


@dataclass
class ActivityTypeVersion:
    name: str
    description: str | None
    trigger_name: str
    filter_name: str
    primary: Attribute
    attributes: list[Attribute]

    def copy(self) -> ActivityTypeVersion:
        return ActivityTypeVersion(
            name=self.name,
            description=self.description,
            trigger_name=self.trigger_name,
            filter_name=self.filter_name,
            primary=Attribute(**vars(self.primary)),
            attributes=[Attribute(**vars(a)) for a in self.attributes],
        )


@dataclass
class ActivityType:
    id: int
    api_name: str
    created: float
    updated: float
    approved: ActivityTypeVersion | None = None
    draft: ActivityTypeVersion | None = None
    deleted: bool = False

    @property
    def status(self) -> str:
        # Enum: draft, approved, approved with draft, deleted (docs/reference/marketo-api.md §7.2)
        if self.deleted:
            return "deleted"
        if self.approved and self.draft:
            return "approved with draft"
        return "approved" if self.approved else "draft"


@dataclass
class Activity:
    id: int
    guid: str
    lead_id: int
    type_id: int
    date: float
    primary_value: str
    attributes: list[dict[str, Any]]
    created: float
    campaign_id: int | None = None


@dataclass
class COField:
    name: str
    display_name: str
    data_type: str
    description: str | None = None
    is_dedupe: bool = False
    related_to: tuple[str, str] | None = None  # (object name, field) for link fields
    length: int | None = None
    updateable: bool = True


@dataclass
class COVersion:
    display_name: str
    plural_name: str
    description: str | None
    show_in_lead_detail: bool
    fields: list[COField]

    def field(self, name: str) -> COField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def dedupe_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.is_dedupe]

    def copy(self) -> COVersion:
        return COVersion(
            display_name=self.display_name,
            plural_name=self.plural_name,
            description=self.description,
            show_in_lead_detail=self.show_in_lead_detail,
            fields=[COField(**vars(f)) for f in self.fields],
        )


@dataclass
class COType:
    api_name: str
    created: float
    updated: float
    approved: COVersion | None = None
    draft: COVersion | None = None

    @property
    def state(self) -> str:
        if self.approved and self.draft:
            return "approvedWithDraft"
        return "approved" if self.approved else "draft"


@dataclass
class CORecord:
    guid: str
    values: dict[str, Any]
    created: float
    updated: float


@dataclass
class ImportJob:
    batch_id: int
    kind: str  # "leads" | "customobjects" | "programmembers"
    created: float
    header: list[str]
    rows: list[list[str]]
    delimiter: str
    params: dict[str, Any]
    status: str = "Queued"
    started: float | None = None
    finished: float | None = None
    processed: int = 0
    failed_rows: list[tuple[list[str], str]] = field(default_factory=list)
    warning_rows: list[tuple[list[str], str]] = field(default_factory=list)
    message: str = ""
    client_id: str = ""
