"""The tenants file: which Kaltura virtual events go to which Marketo instance and program.

YAML, validated with pydantic; every problem is collected and reported at once (ConfigError),
never a traceback. Secrets are given by reference only (an environment variable or a file),
so the file itself can live in a ConfigMap or a repository. Format: docs/configuration.md.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from kmsync_config.lead_fields import LeadFieldName, LeadSource, SourceText, effective_lead_fields
from kmsync_config.urls import https_problem
from kmsync_contracts.codecs import describe_validation_error
from kmsync_contracts.granular import GRANULAR_STATUS_FIELD
from kmsync_contracts.kaltura_records import AttendanceStatus
from kmsync_contracts.seed import GRANULAR_STATUS_LABELS, STATUS_STEPS

MUNCHKIN_ID = re.compile(r"^\d{3}-[A-Za-z]{3}-\d{3}$")


class ConfigError(ValueError):
    """Invalid configuration; `problems` holds one line per problem, all of them at once."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {source}:\n{listed}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """Where a secret lives: exactly one of an environment variable name or a file path."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (variable name) or 'file' (path)")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def resolve(self) -> SecretStr:
        """The secret's value; raises ValueError saying where it was looked for."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set or empty")
            return SecretStr(value)
        assert self.file is not None
        try:
            value = self.file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {self.file}: {exc.strerror}") from None
        if not value:
            raise ValueError(f"secret file {self.file} is empty")
        return SecretStr(value)


def _no_inline_secret(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "secrets are never written inline: use {env: VARIABLE_NAME} or {file: /path/to/secret}"
        )
    return value


InlineRejectingSecretRef = Annotated[SecretRef, Field(description="a secret, by reference")]


class ProgramMemberFields(Strict):
    """Program member custom fields kmsync writes in this instance (docs/reference/marketo-api.md §13)."""

    #: API name of the string field holding the seed's granular label (docs/design/granular-statuses.md
    #: §1.1). The API name the Marketo UI derives from a display name is UNCONFIRMED (§13.2): set the
    #: one `kmsync marketo check` reports.
    granular_status: str = Field(default=GRANULAR_STATUS_FIELD, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    #: Also write the label into the member's standard statusReason (same call; whether marketers can
    #: filter on it is UNCONFIRMED, docs/reference/marketo-api.md §13.5).
    mirror_to_status_reason: bool = False


class MarketoInstance(Strict):
    """One Marketo Engage instance (subscription) and this deployment's share of its limits."""

    munchkin_id: str
    #: The REST API endpoint domain from Admin > Web Services, without /rest or /identity.
    endpoint: str
    client_id: str = Field(min_length=1)
    client_secret: InlineRejectingSecretRef
    #: Share of the instance's API limits (100 calls/20 s, concurrency, daily quota) kmsync may use.
    share: float = Field(default=0.5, gt=0, le=1)
    #: The subscription's daily API call quota (Marketo's default is 50,000; yours may differ).
    daily_quota: int = Field(default=50_000, gt=0)
    #: Calls per 20 s rolling window of the whole instance (docs/reference/marketo-api.md §2.1: 100 per 20 s for
    #: every subscription); kmsync uses ``share`` of it. Change it only for a sandbox whose limits
    #: are lifted or a limit Adobe has confirmed for your subscription.
    rate_limit_calls: int = Field(default=100, ge=1, strict=True)
    #: Records from which the sink uses the Bulk Import API for this instance (docs/reference/marketo-api.md §9):
    #: None follows the sink's KMSYNC_BULK_MIN_RECORDS setting (unset: chosen per window from its volume and
    #: the budget), 0 never uses bulk for this instance.
    bulk_min_records: int | None = Field(default=None, ge=0, strict=True)
    #: The backfill lane's cap: fraction of kmsync's share of the rolling window (and concurrency) that
    #: backfill operations (`kmsync backfill`, uploads marked as history) may use, only what live leaves.
    backfill_share: float = Field(default=0.3, gt=0, le=1)
    program_member_fields: ProgramMemberFields = ProgramMemberFields()

    _check_secret = field_validator("client_secret", mode="before")(_no_inline_secret)

    @field_validator("munchkin_id")
    @classmethod
    def _munchkin(cls, v: str) -> str:
        if not MUNCHKIN_ID.match(v):
            raise ValueError("a Munchkin id looks like 123-ABC-456")  # the value: describe_validation_error
        return v.upper()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        # The seed: copy the REST endpoint "but do not include the '/rest' or '/identity' part",
        # and "it is mandatory to include https://". http is accepted only for a loopback sandbox.
        # Each message says the problem; describe_validation_error adds the value once.
        v = v.strip().rstrip("/")
        problem = https_problem(v)
        if problem is not None:
            raise ValueError(f"the Marketo endpoint {problem}; copy it from Admin > Web Services > "
                             "REST API Endpoint")
        parts = urlsplit(v)
        api_path = {segment.lower() for segment in parts.path.split("/")} & {"rest", "identity"}
        if api_path:
            raise ValueError(f"give the base URL of the REST API endpoint, without /{min(api_path)}/...: "
                             f"use '{parts.scheme}://{parts.netloc}'")
        return v


class KalturaPartner(Strict):
    """A Kaltura partner (account) and how to reach its APIs."""

    #: api_v3 host, e.g. https://www.kaltura.com
    service_url: str
    #: User Profile service base, e.g. https://user.us.ovp.kaltura.com/api/v1
    user_profile_url: str
    admin_secret: InlineRejectingSecretRef
    #: Secret used to sign HTTP notifications; defaults to the admin secret (docs/reference/kaltura-api.md §2.4).
    notification_secret: InlineRejectingSecretRef | None = None
    #: Events Platform API host (docs/reference/kaltura-api.md §9.1), e.g. https://events-api.nvp1.ovp.kaltura.com:
    #: ingest reads each event's start and end there. Absent: from events[].schedule (§9.4).
    events_api_url: str | None = None

    _check_secrets = field_validator("admin_secret", "notification_secret", mode="before")(_no_inline_secret)

    @field_validator("service_url", "user_profile_url", "events_api_url")
    @classmethod
    def _https(cls, v: str | None) -> str | None:
        # session.start sends the partner's admin secret in the request body and every later call
        # carries the KS (docs/reference/kaltura-api.md §1.2): never over plain HTTP, except to a loopback sandbox.
        if v is None:
            return None
        v = v.strip()
        problem = https_problem(v)
        if problem is not None:
            raise ValueError(f"the Kaltura URL {problem}")
        return v


class Outputs(Strict):
    """What kmsync writes to Marketo for an event."""

    program_status: bool = True
    custom_objects: bool = True
    custom_activities: bool = True
    #: Tenants configured before custom objects existed: activities only, channel_id 0 and an
    #: empty channel_name (the seed's note on existing users).
    legacy_activities_only: bool = False

    @model_validator(mode="after")
    def _legacy(self) -> Outputs:
        if self.legacy_activities_only and self.custom_objects:
            raise ValueError("legacy_activities_only writes activities only: set custom_objects: false")
        if self.legacy_activities_only and not self.custom_activities:
            raise ValueError("legacy_activities_only needs custom_activities: true")
        return self


class Schedule(Strict):
    """An event's start and end, when Kaltura's APIs do not give them (docs/reference/kaltura-api.md §9.4).
    Times need an offset (compared in UTC)."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Schedule:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class VisitRules(Strict):
    """How an ``attended`` status becomes a visit label; how Kaltura tells them apart is UNCONFIRMED
    (docs/reference/kaltura-api.md §12)."""

    #: A visit after the event's end: no label (the member keeps its last one) or During-event visit.
    after_event_visit: Literal["none", "During-event visit"] = "none"


class SessionConfig(Strict):
    entry_id: str = Field(min_length=1)
    name: str | None = None
    channel_id: int | None = None
    channel_name: str | None = None


class EventConfig(Strict):
    """One Kaltura virtual event and where its data goes in Marketo."""

    name: str = Field(min_length=1)
    partner_id: int = Field(gt=0)
    virtual_event_id: int = Field(gt=0)
    #: The event's App Registry guid (User Profile appGuid); looked up if empty.
    app_guid: str = ""
    marketo_instance: str
    program_id: int = Field(gt=0)
    outputs: Outputs = Outputs()
    #: Kaltura attendanceStatus → Marketo channel status name, replacing the defaults.
    status_overrides: dict[AttendanceStatus, str] = Field(default_factory=dict)
    sessions: list[SessionConfig] = Field(default_factory=list)
    #: The event's start and end where Kaltura does not give them (docs/design/granular-statuses.md §2);
    #: they decide Pre-event vs During-event visit.
    schedule: Schedule | None = None
    #: Where ingest reads the schedule (docs/reference/kaltura-api.md §9): ``auto`` tries the Events
    #: Platform (where the partner has events_api_url), then api_v3's main schedule event (its meaning is
    #: UNCONFIRMED, §9.2), then ``schedule``; a named source is the only one read from Kaltura, ``tenants``
    #: reads none. Whatever the source, ``schedule`` is the fallback.
    schedule_source: Literal["auto", "events_api", "schedule_event", "tenants"] = "auto"
    #: Kaltura attendanceStatus → the seed's granular label (null: none), replacing the defaults of
    #: docs/reference/kaltura-api.md §12, whose SSO and "to register" rows are guesses.
    label_overrides: dict[AttendanceStatus, str | None] = Field(default_factory=dict)
    visit_rules: VisitRules = VisitRules()
    #: Marketo lead field API name → ``kaltura:<attribute>`` or ``form:<profileData key>``, applied
    #: over the defaults (firstName, lastName, title, company, country); null removes a default
    #: (kmsync_config.lead_fields, docs/configuration.md).
    lead_fields: dict[LeadFieldName, SourceText] = Field(default_factory=dict)

    @cached_property
    def lead_sources(self) -> dict[str, LeadSource]:
        """The lead fields written for this event and where each value comes from."""
        return effective_lead_fields(self.lead_fields)

    @field_validator("label_overrides")
    @classmethod
    def _known_labels(cls, v: dict[AttendanceStatus, str | None]) -> dict[AttendanceStatus, str | None]:
        for kaltura, label in v.items():
            if label is not None and label not in GRANULAR_STATUS_LABELS:
                raise ValueError(f"{kaltura.value} → {label!r}: not one of the seed's granular labels; use one of "
                                 f"{', '.join(GRANULAR_STATUS_LABELS)} or null")
        return v

    @field_validator("status_overrides")
    @classmethod
    def _known_statuses(cls, v: dict[AttendanceStatus, str]) -> dict[AttendanceStatus, str]:
        for kaltura, marketo in v.items():
            if marketo not in STATUS_STEPS:
                raise ValueError(
                    f"{kaltura.value} → {marketo!r}: not a channel status; "
                    f"use one of {', '.join(STATUS_STEPS)}"
                )
        return v


class TenantsConfig(Strict):
    marketo_instances: dict[str, MarketoInstance]
    kaltura_partners: dict[int, KalturaPartner] = Field(default_factory=dict)
    events: list[EventConfig]

    def event(self, partner_id: int, virtual_event_id: int) -> EventConfig | None:
        for ev in self.events:
            if ev.partner_id == partner_id and ev.virtual_event_id == virtual_event_id:
                return ev
        return None

    def instance_for(self, event: EventConfig) -> MarketoInstance:
        return self.marketo_instances[event.marketo_instance]

    def instance_by_munchkin(self, munchkin_id: str) -> tuple[str, MarketoInstance] | None:
        for name, inst in self.marketo_instances.items():
            if inst.munchkin_id == munchkin_id.upper():
                return name, inst
        return None


def _cross_reference_problems(cfg: TenantsConfig) -> list[str]:
    problems: list[str] = []
    defined = ", ".join(sorted(cfg.marketo_instances)) or "none"
    seen: set[tuple[int, int]] = set()
    for i, ev in enumerate(cfg.events):
        if ev.marketo_instance not in cfg.marketo_instances:
            problems.append(
                f"events.{i}.marketo_instance: {ev.marketo_instance!r} is not defined in "
                f"marketo_instances (defined: {defined})"
            )
        if cfg.kaltura_partners and ev.partner_id not in cfg.kaltura_partners:
            problems.append(
                f"events.{i}.partner_id: partner {ev.partner_id} is not defined in kaltura_partners"
            )
        key = (ev.partner_id, ev.virtual_event_id)
        if key in seen:
            problems.append(f"events.{i}: virtual event {ev.virtual_event_id} of partner {ev.partner_id} "
                            "is listed twice")
        seen.add(key)
    munchkins: dict[str, str] = {}
    for name, inst in cfg.marketo_instances.items():
        if inst.munchkin_id in munchkins:
            problems.append(f"marketo_instances.{name}: munchkin id {inst.munchkin_id} is also used by "
                            f"{munchkins[inst.munchkin_id]}")
        munchkins[inst.munchkin_id] = name
    return problems


def _secret_problems(cfg: TenantsConfig) -> list[str]:
    problems: list[str] = []
    refs: list[tuple[str, SecretRef | None]] = [
        (f"marketo_instances.{n}.client_secret", i.client_secret) for n, i in cfg.marketo_instances.items()
    ]
    for pid, partner in cfg.kaltura_partners.items():
        refs.append((f"kaltura_partners.{pid}.admin_secret", partner.admin_secret))
        refs.append((f"kaltura_partners.{pid}.notification_secret", partner.notification_secret))
    for where, ref in refs:
        if ref is None:
            continue
        try:
            ref.resolve()
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def parse_tenants(data: object, source: str = "tenants", check_secrets: bool = True) -> TenantsConfig:
    """Validate an already-parsed YAML document; raises ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must be a mapping with marketo_instances and events"])
    try:
        cfg = TenantsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, describe_validation_error(exc)) from None
    problems = _cross_reference_problems(cfg)
    if check_secrets:
        problems += _secret_problems(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_tenants(path: str | Path, check_secrets: bool = True) -> TenantsConfig:
    """Read and validate a tenants YAML file (secrets are checked to resolve, not stored)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the tenants file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), [f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    return parse_tenants(data, str(path), check_secrets)
