"""Validated configuration: instances, their limits, and the fault plan.

Every number that Adobe documents is the default; every behaviour the reference marks UNCONFIRMED is
a switch here (docs/reference/marketo-api.md §0: "Where a reference says UNCONFIRMED, make the behaviour configurable").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MUNCHKIN_RE = re.compile(r"^\d{3}-[A-Za-z]{3}-\d{3}$")  # docs/reference/marketo-api.md §1.1

DEFAULT_MUNCHKIN_ID = "123-ABC-456"
DEFAULT_CLIENT_ID = "sandbox-client-id"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
DEFAULT_SCOPE = "apiuser@sandbox.example"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsConfig(_Strict):
    """Per-instance limits (docs/reference/marketo-api.md §2.1, §2.2)."""

    rate_limit: int = Field(100, ge=1, description="calls per rolling window → 606")
    rate_window_seconds: float = Field(20.0, gt=0)
    max_concurrency: int = Field(10, ge=1, description="calls in flight → 615")
    daily_quota: int = Field(50_000, ge=1, description="calls per US-Central day → 607")
    max_body_bytes: int = Field(1_048_576, ge=1, description="REST body → HTTP 413")
    max_bulk_body_bytes: int = Field(10_485_760, ge=1, description="bulk import body → HTTP 413")
    max_uri_bytes: int = Field(8_192, ge=1, description="request line → HTTP 414")
    batch_size: int = Field(300, ge=1, description="records per Lead DB call")
    # Whether answers that are themselves limit rejections (606/607/615) occupy a slot in the rate
    # window and the daily count. Adobe only exempts 601/602/604/605/608/611 (§2.1), so by default they count.
    count_limit_rejections: bool = True
    import_running: int = Field(2, ge=1, description="bulk imports processing at once (§9.1)")
    import_queued: int = Field(10, ge=1, description="bulk imports queued, running ones included → 1016")
    import_seconds_base: float = Field(2.0, ge=0, description="simulated processing time per job")
    import_seconds_per_row: float = Field(0.01, ge=0)
    import_queue_seconds: float = Field(0.5, ge=0, description="minimum time a job sits in Queued")


class BehaviourConfig(_Strict):
    """Switches for behaviours the reference marks UNCONFIRMED."""

    # §1.2/§12.3: missing token → 600 or 601
    missing_token_code: Literal["600", "601"] = "601"
    # §12.8: 1025 for an unknown status name at response level (default) or per record
    unknown_status_level: Literal["response", "record"] = "response"
    # §5.1: email matching case-insensitive (UNCONFIRMED; real instances behave case-insensitively)
    email_case_insensitive: bool = True
    # §4.2/§11: key used for the reasons of a skipped custom activity
    activity_skip_key: Literal["reasons", "errors"] = "reasons"
    # §1.3: the legacy access_token query/form parameter
    accept_access_token_param: bool = True
    # §5.3 field types: string 255 characters (or the field's own describe ``length``), text 30,000 bytes.
    # What Marketo does with a longer value is UNCONFIRMED: skip the record with 1001 (default) or store
    # the value cut to the length.
    over_length: Literal["reject", "truncate"] = "reject"
    # §14: "Updating Company fields using Sync Leads endpoint is not supported"; whether an instance
    # refuses a plain ``company`` value is UNCONFIRMED. True: a Sync Leads record carrying ``company``
    # is skipped with 1021 Company update not allowed.
    company_update_refused: bool = False
    # §13.4: the code for a field Sync Program Member Data does not know is UNCONFIRMED (1006 likely), and
    # whether it skips the record or fails the call; and the code for a field that is not updateable.
    unknown_member_field_level: Literal["record", "response"] = "record"
    readonly_member_field_code: str = "1006"


class ClientCredentials(_Strict):
    """A LaunchPoint custom service: its credentials and the API-only user it belongs to (§1.2)."""

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    scope: str = DEFAULT_SCOPE
    #: The API-only user's role (permissions.py): e.g. ["Read-Write Person", "Read-Only Custom Object"].
    #: None: every permission. A call the role does not cover is answered 603 (docs/reference/marketo-api.md §3.2).
    permissions: list[str] | None = None

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, v: list[str] | None) -> list[str] | None:
        from .permissions import PERMISSIONS

        for p in v or []:
            if p not in PERMISSIONS:
                raise ValueError(f"unknown permission {p!r}; known: {', '.join(sorted(PERMISSIONS))}")
        return v


class CustomLeadField(_Strict):
    """A custom lead field provisioned with the instance (docs/reference/marketo-api.md §5.3 field schema)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    display_name: str | None = None
    data_type: Literal["string", "text", "email", "integer", "float", "currency", "boolean", "date", "datetime",
                       "phone", "url", "percent", "score"] = "string"
    length: int | None = Field(None, ge=1)


class CustomMemberField(_Strict):
    """A custom program member field provisioned with the instance (docs/reference/marketo-api.md §13.1)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    display_name: str | None = None
    data_type: Literal["boolean", "date", "datetime", "float", "integer", "string", "url"] = "string"
    length: int | None = Field(None, ge=1)


class InstanceConfig(_Strict):
    munchkin_id: str = DEFAULT_MUNCHKIN_ID
    clients: list[ClientCredentials] = Field(
        default_factory=lambda: [
            ClientCredentials(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
        ]
    )
    preset: Literal["kaltura", "empty"] = "empty"
    token_ttl_seconds: float = Field(3600.0, gt=0, description="§1.2: a new token lives 3600 s")
    token_pod: str = "int"
    lead_fields: list[CustomLeadField] = Field(default_factory=list, description="custom lead fields")
    member_fields: list[CustomMemberField] = Field(default_factory=list,
                                                   description="custom program member fields (besides the preset's)")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    behaviour: BehaviourConfig = Field(default_factory=BehaviourConfig)

    @field_validator("munchkin_id")
    @classmethod
    def _munchkin(cls, v: str) -> str:
        if not MUNCHKIN_RE.match(v):
            raise ValueError(f"munchkin_id {v!r} must look like 123-ABC-456 (3 digits, 3 letters, 3 digits)")
        return v

    @field_validator("clients")
    @classmethod
    def _clients(cls, v: list[ClientCredentials]) -> list[ClientCredentials]:
        if not v:
            raise ValueError("an instance needs at least one client")
        ids = [c.client_id for c in v]
        if len(set(ids)) != len(ids):
            raise ValueError("client_id values must be unique within an instance")
        return v


FaultKind = Literal["606", "615", "604", "608", "611", "502", "713", "http_500", "http_502", "http_503", "drop"]
#: Marketo codes answered inside an HTTP 200 body (§3.1 level 2); Identity never answers these.
BODY_CODE_KINDS = frozenset({"606", "615", "604", "608", "611", "502", "713"})
#: Rejections Marketo makes before any work runs (§2.1), so "applied, then failed" cannot end in them.
BEFORE_WORK_KINDS = frozenset({"606", "615"})


class FaultRule(_Strict):
    """One fault: with probability ``rate``, calls matching ``endpoint`` get ``error``/``latency``.

    ``endpoint`` is an fnmatch pattern over ``"METHOD /path/template"`` (e.g. ``"POST /rest/v1/leads.json"``,
    ``"* /rest/v1/customobjects/*"``, or ``"*"``). ``instance`` limits the rule to one munchkin id.
    """

    endpoint: str = "*"
    instance: str | None = None
    error: FaultKind | None = None
    rate: float = Field(1.0, ge=0.0, le=1.0)
    latency_seconds: float = Field(0.0, ge=0.0)
    apply_then_fail: bool = Field(False, description="run the call, then answer the error (ambiguous write)")
    apply_after_seconds: float | None = Field(
        None, gt=0, description="answer the error at once and run the call this many seconds later: a write Marketo "
        "is still processing after its error (docs/reference/marketo-api.md §10.4, UNCONFIRMED); a Sync Leads call "
        "looks its emails up on arrival, so a same-email upsert that creates the lead meanwhile makes a duplicate "
        "lead when this one is applied (§5.1)")
    max_count: int | None = Field(None, ge=1, description="stop firing after this many hits (per installed plan)")

    @model_validator(mode="after")
    def _apply_then_fail(self) -> FaultRule:
        if self.apply_after_seconds is not None:
            if self.error is None or self.error in BEFORE_WORK_KINDS or self.apply_then_fail:
                raise ValueError("apply_after_seconds needs an error other than 606/615 (Marketo rejects those before "
                                 "any work runs, docs/reference/marketo-api.md §2.1) and excludes apply_then_fail")
        if self.apply_then_fail:
            if self.error is None:
                raise ValueError("apply_then_fail needs an error to answer after the call ran")
            if self.error in BEFORE_WORK_KINDS:
                raise ValueError(f"apply_then_fail cannot end in {self.error}: Marketo rejects "
                                 "606/615 before any work runs (docs/reference/marketo-api.md §2.1)")
        return self


class FaultConfig(_Strict):
    rules: list[FaultRule] = Field(default_factory=list)
    token_ttl_seconds: float | None = Field(None, gt=0, description="overrides every instance's token life")
    token_expire_every_seconds: float | None = Field(
        None, gt=0, description="every N s on the sandbox clock (from installing the plan), every token "
                                "issued so far expires: next use 602, then 601 (docs/reference/marketo-api.md §1.2)")


class SandboxConfig(_Strict):
    instances: list[InstanceConfig] = Field(default_factory=lambda: [InstanceConfig()])
    faults: FaultConfig = Field(default_factory=FaultConfig)
    seed: int = 0

    @field_validator("instances")
    @classmethod
    def _instances(cls, v: list[InstanceConfig]) -> list[InstanceConfig]:
        if not v:
            raise ValueError("at least one instance is required")
        ids = [i.munchkin_id.upper() for i in v]
        if len(set(ids)) != len(ids):
            raise ValueError("munchkin_id values must be unique")
        return v


def load_document(path: str | Path) -> Any:
    """Read a YAML or JSON file (JSON is YAML, but use json for .json to get its error messages)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def load_faults(path: str | Path) -> FaultConfig:
    return FaultConfig.model_validate(load_document(path) or {})


def load_instances(path: str | Path) -> list[InstanceConfig]:
    doc = load_document(path)
    if isinstance(doc, dict) and "instances" in doc:
        doc = doc["instances"]
    if not isinstance(doc, list):
        raise ValueError(f"{path}: expected a list of instances (or a mapping with an 'instances' list)")
    return [InstanceConfig.model_validate(item) for item in doc]
