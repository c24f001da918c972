"""Granular labels on program memberships: one Sync Program Member Data call per planned
``MemberDataCall`` (docs/reference/marketo-api.md §13.4; docs/design/granular-statuses.md §1.4).

The field is the instance's (tenants file ``marketo_instances.<n>.program_member_fields``). Before
writing, the program member describe (§13.3, read once and again after ``refresh_seconds`` or a
1006) says whether the field exists, is updateable and how long it is: a missing or read-only field
answers every label op ``skipped`` with ``kmsync.schema_missing`` without a call; a label longer than
the field is cut and the outcome says so. Record outcomes: ``updated``; ``1013`` (not a member yet:
the status call creating the membership may still be retrying) retried up to ``retries_1013``
attempts, then failed (dead-lettered); ``1006`` permanent, and the describe is read again; anything
else as the client's error table says. Calls go through the client, so through the instance limiter.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from kmsync_config.tenants import ProgramMemberFields
from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo.errors import ErrorClass, MarketoError, failure_of
from kmsync_marketo.member_fields import MemberField, granular_field_problem, label_record, member_fields
from kmsync_marketo.outcomes import Outcome
from kmsync_sink.decisions import Decision
from kmsync_sink.pending import PendingOp, Source
from kmsync_sink.planner import MemberDataCall, MemberDataInput

log = logging.getLogger(__name__)

_RETRYABLE = (ErrorClass.RETRY_SOON, ErrorClass.RETRY_LATER, ErrorClass.REAUTH)

#: Record-level codes (docs/reference/marketo-api.md §13.4).
MEMBERSHIP_NOT_FOUND = "1013"
FIELD_NOT_FOUND = "1006"
#: Members whose last written label a writer remembers (about 200 bytes each).
WRITTEN_MAX = 100_000


class MemberDataClient(Protocol):
    async def sync_program_member_data(self, program_id: int, records: Any) -> list[Outcome]: ...


@runtime_checkable
class MemberSchemaReader(Protocol):
    async def describe_program_members(self) -> list[dict[str, Any]]: ...


class LeadIds(Protocol):
    """The window's lead ids (executor.LeadResolver)."""

    def id(self, email: str) -> int | None: ...

    def unresolved(self, email: str) -> Any: ...


class MemberDataWriter:
    """Writes one instance's granular labels; keeps what the describe said about the field."""

    def __init__(
        self,
        client: MemberDataClient,
        fields: ProgramMemberFields | None = None,
        *,
        retries_1013: int = 3,
        refresh_seconds: float = 600.0,
        observe: Callable[[str, int, str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.fields = fields or ProgramMemberFields()
        self.retries_1013 = retries_1013
        self.refresh_seconds = refresh_seconds
        self._observe = observe or (lambda endpoint, n, code: None)
        self._mono = monotonic
        self._field: MemberField | None = None
        self._problem: str | None = None
        self._read_at: float | None = None
        #: (program, email) → (label rank, source position) of the label this process last wrote: a
        #: retried older label never overwrites a newer one written meanwhile (Marketo's member fields
        #: have no forward-only rule of their own). A replay after a restart comes in offset order. The
        #: most recently written ``WRITTEN_MAX`` members are kept: an older label is retried within minutes.
        self._written: OrderedDict[tuple[int, str], tuple[tuple[int, int], Source]] = OrderedDict()

    async def _target(self) -> tuple[MemberField | None, str | None]:
        """(the field as described, why labels cannot be written); (None, None): not checkable, send."""
        if not isinstance(self.client, MemberSchemaReader):
            return None, None
        if self._read_at is None or self._mono() - self._read_at >= self.refresh_seconds:
            try:
                fields = member_fields(await self.client.describe_program_members())
            except MarketoError as exc:  # not read now: write as configured, Marketo answers per record
                log.warning("program member describe failed (%s); labels are sent unchecked", exc)
                return self._field, None
            self._field = fields.get(self.fields.granular_status)
            self._problem = granular_field_problem(fields, self.fields.granular_status)
            self._read_at = self._mono()
        return self._field, self._problem

    async def execute(self, call: MemberDataCall, leads: LeadIds) -> list[Decision]:
        field, problem = await self._target()
        if problem is not None:
            return [Decision(p, "skipped", reason_code=ReasonCode.SCHEMA_MISSING,
                             reason=f"granular label not written: {problem}")
                    for item in call.items for p in item.ops]
        out: list[Decision] = []
        sendable: list[tuple[MemberDataInput, int | None]] = []
        records: list[dict[str, Any]] = []
        for item in call.items:
            if self._superseded(call.program_id, item):
                out += [Decision(p, "skipped", reason_code=ReasonCode.FORWARD_ONLY_SKIP, reason=(
                    f"granular label {item.op.granular_status!r} not written: a later or higher label of this "
                    "member was written meanwhile")) for p in item.ops]
                continue
            lead_id = leads.id(item.email)
            if lead_id is None:
                f = leads.unresolved(item.email)
                out += [Decision(p, "failed", reason_code=f.code, reason=f.reason, retryable=f.retryable)
                        for p in item.ops]
                continue
            rec = label_record(lead_id, item.op.granular_status, self.fields.granular_status,
                               length=field.length if field is not None else None,
                               mirror_to_status_reason=self.fields.mirror_to_status_reason)
            sendable.append((item, rec.cut_from))
            records.append(rec.record)
        if records:
            out += await self._send(call.program_id, sendable, records)
        return out

    async def _send(self, program_id: int, sendable: list[tuple[MemberDataInput, int | None]],
                    records: list[dict[str, Any]]) -> list[Decision]:
        try:
            outcomes = await self.client.sync_program_member_data(program_id, records)
        except MarketoError as exc:
            f = failure_of(exc)
            self._observe("program_member_data", len(records), f.code)
            return [Decision(p, "failed", reason_code=f.code, reason=f.reason,
                             retryable=f.error_class in _RETRYABLE)
                    for item, _ in sendable for p in item.ops]
        failed = {o.reason_code or "failed" for o in outcomes if o.status == "failed"}
        whole_call = len(failed) == 1 and all(o.status == "failed" for o in outcomes)
        self._observe("program_member_data", len(records), next(iter(failed)) if whole_call else "ok")
        if FIELD_NOT_FOUND in failed:
            self._read_at = None  # the field went away: read the describe again before the next call
        for (item, _), o in zip(sendable, outcomes, strict=True):
            if o.ok:
                self._remember((program_id, item.email), _order(item))
        # Each outcome names the call that carried it (kmsync trace, issue #19).
        return [dataclasses.replace(self._decision(p, o, cut_from), request_id=o.request_id)
                for (item, cut_from), o in zip(sendable, outcomes, strict=True) for p in item.ops]

    def _remember(self, key: tuple[int, str], order: tuple[tuple[int, int], Source]) -> None:
        self._written[key] = order
        self._written.move_to_end(key)
        while len(self._written) > WRITTEN_MAX:
            self._written.popitem(last=False)

    def _superseded(self, program_id: int, item: MemberDataInput) -> bool:
        written = self._written.get((program_id, item.email))
        return written is not None and _order(item) < written

    def _decision(self, p: PendingOp, o: Outcome, cut_from: int | None) -> Decision:
        if o.ok:
            note = f"granular label cut from {cut_from} characters to the field's length" if cut_from else None
            return Decision(p, o.status, o.marketo_id, o.reason_code if cut_from is None else ReasonCode.TRUNCATED,
                            note or o.reason)
        if o.reason_code == MEMBERSHIP_NOT_FOUND:
            # The membership is created by the status call (§13.4): it may still be retrying.
            retry = p.attempts <= self.retries_1013
            return Decision(p, "failed", o.marketo_id, o.reason_code,
                            f"{o.reason or 'Membership not found'}; the lead is not a member of the program"
                            + (" yet (retried)" if retry else f" after {p.attempts} attempts"), retryable=retry)
        return Decision(p, o.status, o.marketo_id, o.reason_code, o.reason, retryable=o.retryable)


def _order(item: MemberDataInput) -> tuple[tuple[int, int], Source]:
    """Where the written label stands: its rank, then the position of its op (the latest of equal rank wins)."""
    source = next(p.source for p in item.ops if p.op is item.op)
    return (item.op.label_rank[0], item.op.label_rank[1]), source
