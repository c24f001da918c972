"""Runs one window's plan against the Marketo client: leads first, then everything that needs a lead
id, and turns every per-record outcome into a decision for each operation it answers.

Calls of one stage run concurrently; the client's per-instance limiter decides how many are really
in flight and when (docs/reference/marketo-api.md §2.1). Lead upserts of one window never share an email, and one
instance runs one window at a time, so one upsert per email is in flight (§5.1).

With a ``BulkPipeline``, a Bulk custom object import is started by the window (lead ids resolved,
the job handed to the pipeline) and finishes in the background: its decisions go to ``emit`` when
Marketo has processed it, after ``execute`` returned (pipeline.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from kmsync_common.logs import hash_email
from kmsync_contracts import utc_now
from kmsync_contracts.marketo_ops import CustomObjectUpsert, OperationBase
from kmsync_contracts.outcomes import ActivityIntent
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.trusted import FastPath, copied_from
from kmsync_marketo.client import ActivityRecord, LeadActivity
from kmsync_marketo.endpoints import BATCH_MAX
from kmsync_marketo.errors import (
    ErrorClass,
    MarketoError,
    classify,
    failure_of,
)
from kmsync_marketo.outcomes import Outcome
from kmsync_marketo.schema import ENGAGEMENT_ACTIVITY, ActivitySchema, ObjectSchema, Shaped
from kmsync_sink import lead_writes
from kmsync_sink.decisions import Decision
from kmsync_sink.durable import PublishAbandoned
from kmsync_sink.intents import IntentRecorder, LedgerIntents
from kmsync_sink.member_data import MemberDataWriter
from kmsync_sink.memory import ActivityWrites, LeadCache
from kmsync_sink.pending import PendingOp
from kmsync_sink.pipeline import BulkPipeline
from kmsync_sink.planner import (
    ActivityCall,
    ActivityInput,
    LeadCall,
    ObjectCall,
    ObjectInput,
    Plan,
    StatusCall,
    link_record,
)
from kmsync_sink.schema_map import STALE_SCHEMA_CODES, InstanceSchemaMap, SchemaFailure
from kmsync_sink.writer import BulkWriter, MarketoWriter

log = logging.getLogger(__name__)

#: (endpoint name, records in the call, "ok" or the code that failed the whole call)
CallObserver = Callable[[str, int, str], None]
#: Receives each call's decisions as soon as the call returns.
Emit = Callable[[list[Decision]], Awaitable[None]]

_RETRYABLE = (ErrorClass.RETRY_SOON, ErrorClass.RETRY_LATER, ErrorClass.REAUTH)
#: Record-level "lead not found": our cached id is stale (merged or deleted lead); re-resolve.
_LEAD_NOT_FOUND = "1004"
#: The activity intent's fast path (kmsync_contracts.trusted): the operation's op id and Munchkin id were validated
#: when it was read; the other values are checked against ActivityIntent's constraints, and validated as before
#: when a check fails (4.6 µs against 1.9 µs per intent, in-process; issue #22).
_INTENT = FastPath(ActivityIntent, copied_from(OperationBase, "op_id", "munchkin_id"))


@dataclass(frozen=True)
class _Failure:
    code: str
    reason: str
    retryable: bool


def _failure_from_exception(exc: MarketoError) -> _Failure:
    f = failure_of(exc)
    return _Failure(f.code, f.reason, f.error_class in _RETRYABLE)


def _from_outcome(p: PendingOp, o: Outcome, api: Literal["rest", "bulk"] = "rest") -> Decision:
    return Decision(
        pending=p,
        status=o.status,
        marketo_id=o.marketo_id,
        reason_code=o.reason_code,
        reason=o.reason,
        retryable=o.retryable,
        api=api,
        request_id=o.request_id,
    )


def _failed(ops: Iterable[PendingOp], f: _Failure, api: Literal["rest", "bulk"] = "rest") -> list[Decision]:
    return [Decision(p, "failed", reason_code=f.code, reason=f.reason, retryable=f.retryable, api=api)
            for p in ops]


async def _guarded(coro: Awaitable[list[Decision]], ops: list[PendingOp]) -> list[Decision]:
    """An unexpected error in one call (a bug, a record the client rejects) fails that call's
    records (retried, then dead-lettered) instead of crashing the sink into a replay loop."""
    try:
        return await coro
    except Exception as exc:
        if isinstance(exc, MarketoError):
            return _failed(ops, _failure_from_exception(exc))
        log.exception("call failed unexpectedly; its %d record(s) will be retried", len(ops))
        return _failed(ops, _Failure(ReasonCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", True))


#: Codes of a call Marketo answered with something other than the documented envelope (a 200 whose
#: body is not JSON, a result array without this record): it ran, so the write may be there.
_ANSWERED_ODDLY = frozenset({ReasonCode.PROTOCOL, ReasonCode.MISSING_RESULT})


def maybe_applied(o: Outcome) -> bool:
    """A failure after which Marketo may have done the write (docs/reference/marketo-api.md §10.4): the
    client says so (kmsync_marketo.errors.failure_of: a timeout-like code, an HTTP 5xx or no answer at
    all, an answer that is not the documented envelope), a record-level timeout-like Marketo code, or
    an odd answer from a writer that did not flag it. Record-level skips and rejections before any
    work are certain."""
    if o.status != "failed":
        return False
    code = o.reason_code or ""
    return o.maybe_applied or code in _ANSWERED_ODDLY or classify(code).ambiguous


def call_code(outcomes: Sequence[Outcome]) -> str:
    """"ok" unless every record failed with one code (a call-level failure)."""
    codes = {o.reason_code for o in outcomes if o.status == "failed"}
    if outcomes and len(codes) == 1 and all(o.status == "failed" for o in outcomes):
        return next(iter(codes)) or "failed"
    return "ok"


class LeadResolver:
    """One window's lead ids: those its lead upserts returned, else the cache's; and for an email
    without one, why (its upsert's failure, or not known yet)."""

    def __init__(self, cache: LeadCache) -> None:
        self.cache = cache
        self.resolved: dict[str, int] = {}
        #: email → why its lead upsert failed in this window.
        self.failures: dict[str, _Failure] = {}

    def id(self, email: str) -> int | None:
        return self.resolved.get(email) or self.cache.get(email)

    def learned(self, email: str, lead: int) -> None:
        self.resolved[email] = lead
        self.cache.put(email, lead)

    def unresolved(self, email: str) -> _Failure:
        return self.failures.get(email) or _Failure(
            ReasonCode.LEAD_UNRESOLVED, "the lead's id is not known yet (its upsert did not complete)", True
        )


class _Reporter:
    """One window's decisions: collected, and each call's published as soon as the call returns."""

    def __init__(self, executor: WindowExecutor, emit: Emit | None) -> None:
        self.executor = executor
        self.emit = emit
        self.collected: list[Decision] = []

    async def decided(self, batch: list[Decision]) -> None:
        self.collected.extend(batch)
        await self.executor._report(batch, self.emit)

    async def call(self, coro: Awaitable[list[Decision]], ops: list[PendingOp]) -> None:
        """Run one call (guarded: an unexpected error fails its records) and report its decisions."""
        await self.decided(await _guarded(coro, ops))


class WindowExecutor:
    def __init__(
        self,
        writer: MarketoWriter,
        cache: LeadCache,
        ledger: ActivityWrites,
        observe_call: CallObserver | None = None,
        bulk: BulkWriter | None = None,
        bulk_in_flight: Callable[[int], None] | None = None,
        pipeline: BulkPipeline | None = None,
        intents: IntentRecorder | None = None,
        verify_delay_seconds: float = 0.0,
        verify_lookback: timedelta = timedelta(hours=1),
        observe_verify: Callable[[str, int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        schema: InstanceSchemaMap | None = None,
        member_data: MemberDataWriter | None = None,
    ) -> None:
        """``intents``: where an activity call's intents are recorded before it is sent (default: the
        ledger only). ``verify_delay_seconds``: how old an intent must be before the lead's activity
        log is read to verify it (a request the client gave up on may still be running at Marketo).
        ``verify_lookback``: the log is read from this long before the earlier of the intent's
        activity date and its recording time. ``schema``: the instance's discovered schema the custom
        object records and activities are mapped onto (schema_map.py; the worker makes one per
        instance); None: records go out in the seed's names, as transform emitted them."""
        self.writer = writer
        self.schema = schema
        #: Granular labels (Sync Program Member Data, member_data.py); default: the default field name.
        self.member_data = member_data or MemberDataWriter(writer, observe=observe_call)
        self.intents: IntentRecorder = intents or LedgerIntents(ledger)
        self.verify_delay_seconds = verify_delay_seconds
        self.verify_lookback = verify_lookback
        self._observe_verify = observe_verify or (lambda result, n: None)
        self._mono = monotonic
        self._now = now
        self.bulk = bulk
        #: Bulk custom object jobs finish in the background (None: a window waits for them).
        self.pipeline = pipeline
        self._bulk_in_flight = bulk_in_flight or (lambda delta: None)
        self.cache = cache
        self.ledger = ledger
        self._observe = observe_call or (lambda endpoint, records, code: None)
        self._activity_types: dict[str, int] | None = None
        #: Publications of outcomes still running.
        self.publishing: set[asyncio.Future[None]] = set()

    async def _report(self, batch: list[Decision], emit: Emit | None) -> None:
        if emit is not None and batch:
            # Shielded: once Marketo has answered, the outcome is published even if the window (or
            # background job) is being cancelled (the worker awaits ``publishing`` before it lets go).
            task = asyncio.ensure_future(emit(batch))
            self.publishing.add(task)
            task.add_done_callback(self.publishing.discard)
            await asyncio.shield(task)

    async def execute(self, plan: Plan, emit: Emit | None = None) -> list[Decision]:
        """Run the plan; each call's decisions go to ``emit`` as soon as that call returns (so a
        stop in the middle of a window loses no outcome of a call already made). Returns them all,
        except those of pipelined bulk jobs still running (they go to ``emit`` when they end)."""
        for p in _plan_ops(plan):
            p.attempts += 1
        out = _Reporter(self, emit)
        await out.decided([
            Decision(p, "skipped", reason_code=ReasonCode.ALREADY_WRITTEN,
                     reason="custom activity already written (insert-only; replay not sent)")
            for p in plan.already_written
        ])
        leads = LeadResolver(self.cache)
        use_bulk = plan.use_bulk and self.bulk is not None
        await self._stage_leads(plan, leads, out, use_bulk)
        await self._stage_rest(plan, leads, out, use_bulk)
        return out.collected

    async def _stage_leads(self, plan: Plan, leads: LeadResolver, out: _Reporter, use_bulk: bool) -> None:
        """Stage 1: every lead upsert of the window (REST and bulk calls concurrently)."""
        rest_lead_calls = plan.lead_calls
        if plan.bulk_lead_calls and not use_bulk:  # no bulk writer: the same inputs over REST
            rest_lead_calls = rest_lead_calls + [LeadCall(c.inputs[i:i + BATCH_MAX])
                                                 for c in plan.bulk_lead_calls
                                                 for i in range(0, len(c.inputs), BATCH_MAX)]
        await _all_then_raise(*(out.call(self._leads(c, leads), _lead_ops(c)) for c in rest_lead_calls),
                              *(out.call(self._bulk_leads(c, leads), _lead_ops(c))
                                for c in plan.bulk_lead_calls if use_bulk))

    async def _stage_rest(self, plan: Plan, leads: LeadResolver, out: _Reporter, use_bulk: bool) -> None:
        """Stage 2: what needs a lead id: program statuses (one program's calls in order), custom
        objects and custom activities, all concurrently."""
        by_program: dict[int, list[StatusCall]] = {c.program_id: [] for c in plan.member_data_calls}
        for c in plan.status_calls:
            by_program.setdefault(c.program_id, []).append(c)
        calls: list[tuple[Awaitable[list[Decision]], list[PendingOp]]] = []
        calls += [(self._object_call(c, plan, leads, out.emit), [p for i in c.items for p in i.ops])
                  for c in plan.object_calls]
        calls += [(self._activities(c, leads), [p for a in c.items for p in a.ops]) for c in plan.activity_calls]
        await _all_then_raise(*(self._program_statuses(pc, leads, out, use_bulk, plan, pid)
                                for pid, pc in by_program.items()),
                              *(out.call(c, o) for c, o in calls))

    async def _program_statuses(
        self, program_calls: list[StatusCall], leads: LeadResolver, out: _Reporter, use_bulk: bool,
        plan: Plan, program_id: int,
    ) -> None:
        # One program's status calls in the planner's order (lower steps first), one at a time.
        for c in program_calls:
            await out.call(self._bulk_statuses(c, leads) if use_bulk else self._statuses(c, leads),
                           [p for m in c.members for p in m.ops])
        # Then its granular labels: Sync Program Member Data needs the membership (marketo-api.md §13.4).
        for d in (d for d in plan.member_data_calls if d.program_id == program_id):
            await out.call(self.member_data.execute(d, leads), [p for i in d.items for p in i.ops])

    def _object_call(
        self, c: ObjectCall, plan: Plan, leads: LeadResolver, emit: Emit | None
    ) -> Awaitable[list[Decision]]:
        if c.object_name in plan.bulk_objects and self.bulk is not None:
            if self.pipeline is not None and emit is not None:
                return self._start_bulk_objects(c, leads, emit)
            return self._bulk_objects(c, leads)
        return self._objects(c, leads)  # the client cuts it into calls of ≤ 300

    # ----- stage 1: leads
    async def _leads(self, call: LeadCall, leads: LeadResolver) -> list[Decision]:
        try:
            shaped = await lead_writes.shaped_leads(self.schema, call)  # the instance's lead fields (issue #16)
            result = await lead_writes.sync_leads(self.writer, self.schema, [s.values for s in shaped],
                                                  lambda n, os: self._observe("leads", n, call_code(os)))
        except MarketoError as exc:
            f = _failure_from_exception(exc)
            self._observe("leads", len(call.inputs), f.code)
            for li in call.inputs:
                leads.failures[li.email] = f
            return _failed((p for li in call.inputs for p in li.ops), f)
        out: list[Decision] = []
        for i, (li, o) in enumerate(zip(call.inputs, result.outcomes, strict=True)):
            lead = result.lead_ids.get(li.email) or (int(o.marketo_id) if o.ok and o.marketo_id else None)
            if o.ok and lead is not None:
                leads.learned(li.email, lead)
            else:
                leads.failures[li.email] = _Failure(o.reason_code or ReasonCode.UNKNOWN,
                                                    o.reason or "lead upsert failed", o.retryable or o.ok)
                if o.status == "failed":
                    log.info("lead upsert failed for %s: %s", hash_email(li.email), o.reason_code)
            out += [lead_writes.noted(self._schema_aware(_from_outcome(p, o), o), shaped[i], result.dropped.get(i, ()))
                    for p in li.ops]
        return out

    async def _bulk_leads(self, call: LeadCall, leads: LeadResolver) -> list[Decision]:
        """Bulk lead import (docs/reference/marketo-api.md §9): no lead ids come back, so operations that need an id
        (custom objects, activities) resolve it with a REST upsert on their retry."""
        assert self.bulk is not None
        self._bulk_in_flight(1)
        try:
            shaped = await lead_writes.shaped_leads(self.schema, call)
            records = [s.values for s in shaped]
            result = await self.bulk.import_leads(records)
        except MarketoError as exc:
            f = _failure_from_exception(exc)
            for li in call.inputs:
                leads.failures[li.email] = f
            return _failed((p for li in call.inputs for p in li.ops), f, api="bulk")
        finally:
            self._bulk_in_flight(-1)
        self._observe("bulk_leads", len(records), call_code(result.outcomes))
        out: list[Decision] = []
        for li, o, s in zip(call.inputs, result.outcomes, shaped, strict=True):
            if not o.ok:
                leads.failures[li.email] = _Failure(o.reason_code or ReasonCode.BULK_FAILED,
                                                    o.reason or "bulk import failed", o.retryable)
            out += [lead_writes.noted(_from_outcome(p, o, api="bulk"), s) for p in li.ops]
        return out

    async def _bulk_statuses(self, call: StatusCall, leads: LeadResolver) -> list[Decision]:
        """Bulk program member import by email, one job per (program, status) (§9.2)."""
        assert self.bulk is not None
        out: list[Decision] = []
        members = []
        for m in call.members:
            if m.email in leads.failures:
                out += _failed(m.ops, leads.failures[m.email], api="bulk")
            else:
                members.append(m)
        if not members:
            return out
        self._bulk_in_flight(1)
        try:
            result = await self.bulk.import_program_members(
                call.program_id, call.status_name, [{"email": m.email} for m in members])
        except MarketoError as exc:
            return out + _failed((p for m in members for p in m.ops), _failure_from_exception(exc), api="bulk")
        finally:
            self._bulk_in_flight(-1)
        self._observe("bulk_program_members", len(members), call_code(result.outcomes))
        for m, o in zip(members, result.outcomes, strict=True):
            out += [_from_outcome(p, o, api="bulk") for p in m.ops]
        return out

    async def _bulk_objects(
        self, call: ObjectCall, leads: LeadResolver
    ) -> list[Decision]:
        """Bulk custom object import (§9.2) for a large window or many upserts of one object; records
        whose lead id is not known yet (the link field needs it) fail ReasonCode.LEAD_UNRESOLVED and retry."""
        target = await self._object_target(call.object_name)
        if isinstance(target, SchemaFailure):
            return _failed((p for i in call.items for p in i.ops), _schema_failure(target), api="bulk")
        out, sendable = self._bulk_object_rows(call, target, leads)
        if sendable:
            out += await self._import_objects(call.object_name, target, sendable)
        return out

    async def _start_bulk_objects(
        self, call: ObjectCall, leads: LeadResolver,
        emit: Emit,
    ) -> list[Decision]:
        """The pipelined form of ``_bulk_objects``: the link field is resolved now, then the job is
        handed to the pipeline (waiting for a free slot) and its decisions go to ``emit`` when it
        ends. Returns the decisions known now (records that could not be sent)."""
        assert self.pipeline is not None
        target = await self._object_target(call.object_name)
        if isinstance(target, SchemaFailure):
            return _failed((p for i in call.items for p in i.ops), _schema_failure(target), api="bulk")
        out, sendable = self._bulk_object_rows(call, target, leads)
        if not sendable:
            return out
        ops = [p for i, _, _ in sendable for p in i.ops]

        async def job() -> None:
            await self._report(await _guarded(self._import_objects(call.object_name, target, sendable), ops), emit)

        await self.pipeline.start((i.key for i, _, _ in sendable), job, name=f"bulk-{call.object_name}")
        return out

    def _bulk_object_rows(
        self, call: ObjectCall, target: ObjectSchema | None, leads: LeadResolver,
    ) -> tuple[list[Decision], list[_ObjectRow]]:
        """(decisions of records without a lead id yet, the rows to send with their link field)."""
        out: list[Decision] = []
        sendable: list[_ObjectRow] = []
        for item in call.items:
            lid = leads.id(item.email)
            if lid is None:
                out += _failed(item.ops, leads.unresolved(item.email), api="bulk")
            else:
                sendable.append(self._object_row(call.object_name, target, item, lid))
        return out, sendable

    async def _import_objects(
        self, object_name: str, target: ObjectSchema | None, sendable: list[_ObjectRow]
    ) -> list[Decision]:
        """One Bulk custom object import: submitted, polled until Marketo has processed it, and each
        row's outcome read back (kmsync_marketo.bulk)."""
        assert self.bulk is not None
        if target is not None:
            api_name, dedupe = target.api_name, list(target.dedupe_fields)
        else:
            api_name = object_name
            dedupe = list(dict.fromkeys(f for i, _, _ in sendable for p in i.ops
                                        if isinstance(p.op, CustomObjectUpsert) for f in p.op.dedupe_fields))
        self._bulk_in_flight(1)
        try:
            result = await self.bulk.import_custom_objects(api_name, [r for _, r, _ in sendable], dedupe)
        except MarketoError as exc:
            return _failed((p for i, _, _ in sendable for p in i.ops), _failure_from_exception(exc), api="bulk")
        finally:
            self._bulk_in_flight(-1)
        self._observe("bulk_custom_objects", len(sendable), call_code(result.outcomes))
        out: list[Decision] = []
        for (item, _, shaped), o in zip(sendable, result.outcomes, strict=True):
            out += [self._noted(self._schema_aware(_from_outcome(p, o, api="bulk"), o), shaped) for p in item.ops]
        return out

    # ----- the instance's discovered schema (issue #17)
    async def _object_target(self, logical: str) -> ObjectSchema | SchemaFailure | None:
        return None if self.schema is None else await self.schema.object_target(logical)

    def _object_row(self, logical: str, target: ObjectSchema | None, item: ObjectInput, lead: int) -> _ObjectRow:
        """The record as Marketo gets it: the lead link set, then (with a discovered schema) only the
        instance's fields, under its names, strings cut to their lengths."""
        record = link_record(logical, item.record, lead)
        if target is None or self.schema is None:
            return item, record, None
        shaped = self.schema.shape_object(target, record)
        return item, shaped.values, shaped

    def _noted(self, d: Decision, shaped: Shaped | None) -> Decision:
        """A record written with a value cut to its field's length says so in its outcome."""
        if shaped is None or not shaped.truncated or d.failed or d.reason_code is not None:
            return d
        return dataclasses.replace(d, reason_code=ReasonCode.TRUNCATED, reason=shaped.note())

    def _schema_aware(self, d: Decision, o: Outcome) -> Decision:
        """Marketo says a field or the object is gone (the admin changed it): read the schema again
        and retry the record mapped onto the new one, instead of dead-lettering it."""
        if self.schema is not None and d.failed and o.reason_code in STALE_SCHEMA_CODES:
            self.schema.mark_stale()
            return dataclasses.replace(d, retryable=True)
        return d

    # ----- stage 2
    async def _statuses(
        self, call: StatusCall, leads: LeadResolver
    ) -> list[Decision]:
        out: list[Decision] = []
        sendable: list[tuple[Any, int]] = []
        for m in call.members:
            lid = leads.id(m.email)
            if lid is None:
                out += _failed(m.ops, leads.unresolved(m.email))
            else:
                sendable.append((m, lid))
        if not sendable:
            return out
        try:
            outcomes = await self.writer.sync_program_member_status(
                call.program_id, call.status_name, [lid for _, lid in sendable]
            )
        except MarketoError as exc:
            f = _failure_from_exception(exc)
            self._observe("program_member_status", len(sendable), f.code)
            return out + _failed((p for m, _ in sendable for p in m.ops), f)
        self._observe("program_member_status", len(sendable), call_code(outcomes))
        for (m, _), o in zip(sendable, outcomes, strict=True):
            out += [self._stale_aware(p, o, m.email) for p in m.ops]
        return out

    async def _objects(
        self, call: ObjectCall, leads: LeadResolver
    ) -> list[Decision]:
        out: list[Decision] = []
        target = await self._object_target(call.object_name)
        if isinstance(target, SchemaFailure):
            return _failed((p for i in call.items for p in i.ops), _schema_failure(target))
        sendable: list[_ObjectRow] = []
        for item in call.items:
            lid = leads.id(item.email)
            if lid is None:
                out += _failed(item.ops, leads.unresolved(item.email))
            else:
                sendable.append(self._object_row(call.object_name, target, item, lid))
        if not sendable:
            return out
        api_name = target.api_name if target is not None else call.object_name
        try:
            outcomes = await self.writer.sync_custom_objects(api_name, [r for _, r, _ in sendable])
        except MarketoError as exc:
            f = _failure_from_exception(exc)
            self._observe("custom_objects", len(sendable), f.code)
            return out + _failed((p for i, _, _ in sendable for p in i.ops), f)
        self._observe("custom_objects", len(sendable), call_code(outcomes))
        for (item, _, shaped), o in zip(sendable, outcomes, strict=True):
            out += [self._decided(p, o, item.email, shaped) for p in item.ops]
        return out

    async def _type_ids(self) -> dict[str, int]:
        if self._activity_types is None:
            types = await self.writer.custom_activity_types()
            self._activity_types = {
                str(t["apiName"]): int(t["id"]) for t in types if "apiName" in t and "id" in t
            }
        return self._activity_types

    async def _activities(self, call: ActivityCall, leads: LeadResolver) -> list[Decision]:
        """Custom activities are insert-only (§7.1). An activity that may already be in Marketo (an
        intent with no certain outcome) is looked up in its lead's activity log first; every activity
        sent has its intent recorded durably before the call; an ambiguous answer leaves the intent
        and retries through a verification, never a blind resend."""
        out, fresh, uncertain = self._triage(call)
        if uncertain:
            decided, absent = await self._verify(uncertain)
            out += decided
            fresh += absent
        unsendable, sendable, shapes = await self._activity_rows(fresh, leads)
        out += unsendable
        if sendable:
            out += await self._send_activities(sendable, shapes)
        return out

    def _triage(
        self, call: ActivityCall
    ) -> tuple[list[Decision], list[ActivityInput], list[tuple[ActivityInput, ActivityIntent]]]:
        """(decisions of activities written meanwhile, fresh ones, ones with an uncertain intent)."""
        out: list[Decision] = []
        fresh: list[ActivityInput] = []
        uncertain: list[tuple[ActivityInput, ActivityIntent]] = []
        for a in call.items:
            if a.op.op_id in self.ledger:  # written meanwhile (another copy's verification)
                out += [Decision(p, "skipped", reason_code=ReasonCode.ALREADY_WRITTEN,
                                 reason="custom activity already written (insert-only; replay not sent)")
                        for p in a.ops]
            elif (intent := self.ledger.uncertain(a.op.op_id)) is not None:
                uncertain.append((a, intent))
            else:
                fresh.append(a)
        return out, fresh, uncertain

    async def _activity_rows(
        self, fresh: list[ActivityInput], leads: LeadResolver
    ) -> tuple[list[Decision], list[_ActivityRow], dict[str, Shaped]]:
        """(decisions of activities that cannot be sent, the records to send, how each was shaped)."""
        # The seed's type goes to what discovery found (its id, existing attributes, lengths); any
        # other type by its API name as it is.
        target: ActivitySchema | SchemaFailure | None = None
        type_ids: dict[str, int] = {}
        try:
            if self.schema is not None and any(a.op.activity_type == ENGAGEMENT_ACTIVITY for a in fresh):
                target = await self.schema.activity_target()
            if any(a.op.activity_type != ENGAGEMENT_ACTIVITY or self.schema is None for a in fresh):
                type_ids = await self._type_ids()
        except MarketoError as exc:
            return _failed((p for a in fresh for p in a.ops), _failure_from_exception(exc)), [], {}
        out: list[Decision] = []
        sendable: list[_ActivityRow] = []
        shapes: dict[str, Shaped] = {}
        for a in fresh:
            mapped = a.op.activity_type == ENGAGEMENT_ACTIVITY and self.schema is not None
            if mapped and isinstance(target, SchemaFailure):
                out += _failed(a.ops, _schema_failure(target))
                continue
            type_id = target.type_id if mapped and isinstance(target, ActivitySchema) else \
                type_ids.get(a.op.activity_type)
            lid = leads.id(a.email)
            if type_id is None:
                out += _failed(a.ops, _Failure(
                    ReasonCode.UNKNOWN_ACTIVITY_TYPE,
                    f"custom activity type {a.op.activity_type!r} does not exist in this instance; "
                    "create and approve it (`kmsync marketo check --apply`)", False))
            elif lid is None:
                out += _failed(a.ops, leads.unresolved(a.email))
            else:
                attributes: dict[str, Any] = a.op.attributes  # ActivityRecord validates it into a dict of its own
                primary = a.op.primary_attribute_value
                if mapped and isinstance(target, ActivitySchema) and self.schema is not None:
                    shaped = self.schema.shape_activity(target, attributes)  # reads it, writes a new dict
                    attributes, shapes[a.op.op_id] = shaped.values, shaped
                    primary = self.schema.primary_value(target, primary)
                sendable.append((a, ActivityRecord(
                    lead_id=lid, activity_type_id=type_id, activity_date=a.op.activity_date,
                    primary_attribute_value=primary, attributes=attributes,
                )))
        return out, sendable, shapes

    async def _send_activities(self, sendable: list[_ActivityRow], shapes: dict[str, Shaped]) -> list[Decision]:
        """Intents recorded durably, then the call, then each record's decision (in this order)."""
        recorded_at = self._now()
        try:
            build = _INTENT.build
            await self.intents.record([
                build(op_id=a.op.op_id, munchkin_id=a.op.munchkin_id, lead_id=r.lead_id,
                      activity_type_id=r.activity_type_id, primary_attribute_value=r.primary_attribute_value,
                      activity_date=r.activity_date, recorded_at=recorded_at)
                for a, r in sendable])
        except PublishAbandoned:
            # Stopping with Kafka unavailable: not sent; the next owner replays them.
            return _failed((p for a, _ in sendable for p in a.ops), _Failure(
                ReasonCode.STOPPING, "stopping before the activity's intent was recorded; not sent", True))
        try:
            outcomes = await self.writer.add_custom_activities([r for _, r in sendable])
        except MarketoError as exc:
            # Raised before anything was sent (Identity refused the credentials): certain.
            f = _failure_from_exception(exc)
            self._observe("custom_activities", len(sendable), f.code)
            self.intents.resolve(a.op.op_id for a, _ in sendable)
            return _failed((p for a, _ in sendable for p in a.ops), f)
        except Exception as exc:  # a bug or an unexpected client error: the request may have gone out
            log.exception("activities call failed unexpectedly; its %d record(s) will be verified", len(sendable))
            outcomes = [Outcome(seq=i, status="failed", reason_code=ReasonCode.INTERNAL_ERROR,
                                reason=f"{type(exc).__name__}: {exc}", maybe_applied=True)
                        for i in range(len(sendable))]
        self._observe("custom_activities", len(sendable), call_code(outcomes))
        return self._activity_decisions(sendable, outcomes, shapes)

    def _activity_decisions(
        self, sendable: list[_ActivityRow], outcomes: list[Outcome], shapes: dict[str, Shaped]
    ) -> list[Decision]:
        """Written: into the ledger. May be in Marketo: the intent stays and the retry verifies.
        Certainly not written: the intent is resolved."""
        out: list[Decision] = []
        certain: list[str] = []
        for (a, _), o in zip(sendable, outcomes, strict=True):
            if o.ok:
                self.ledger.add(a.op.op_id)
            if maybe_applied(o):
                # May be in Marketo: the intent stays; the retry looks it up before any resend.
                out += [Decision(p, "failed", o.marketo_id, o.reason_code,
                                 f"{o.reason or 'ambiguous failure'}; the activity may have been applied, so it "
                                 "is verified in the lead's activity log before it is sent again",
                                 retryable=True, maybe_applied=True)
                        for p in a.ops]
                continue
            if not o.ok:
                certain.append(a.op.op_id)  # Marketo answered for this record: not written
            out += [self._decided(p, o, a.email, shapes.get(a.op.op_id)) for p in a.ops]
        self.intents.resolve(certain)
        return out

    async def _verify(
        self, items: list[tuple[ActivityInput, ActivityIntent]]
    ) -> tuple[list[Decision], list[ActivityInput]]:
        """Look uncertain activities up in their leads' activity logs (Get Lead Activities, through
        the instance limiter). Returns decisions (found: written; read failed or too early: retried;
        absent after the last attempt: dead-lettered as not applied) and the inputs found absent,
        which may be sent."""
        out, ready = self._too_early(items)
        absent: list[ActivityInput] = []
        by_type: dict[int, list[tuple[ActivityInput, ActivityIntent]]] = {}
        for a, intent in ready:
            by_type.setdefault(intent.activity_type_id, []).append((a, intent))
        for type_id, group in by_type.items():
            since = min(min(i.activity_date, i.recorded_at) for _, i in group) - self.verify_lookback
            try:
                found = await self.writer.lead_activities([type_id], [i.lead_id for _, i in group], since)
            except Exception as exc:
                f = _failure_from_exception(exc) if isinstance(exc, MarketoError) else _Failure(
                    ReasonCode.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", True)
                self._observe("lead_activities", len(group), f.code)
                self._observe_verify("error", len(group))
                for a, _ in group:
                    out += [self._unverified(p, f) for p in a.ops]
                continue
            self._observe("lead_activities", len(group), "ok")
            index = _index(found)
            for a, intent in group:
                hit = index.get((intent.lead_id, intent.activity_type_id, intent.primary_attribute_value))
                if hit is not None:
                    self._observe_verify("found", 1)
                    self.ledger.add(a.op.op_id)
                    out += [Decision(p, "created", hit.marketo_id or None, ReasonCode.VERIFIED_WRITTEN,
                                     "found in the lead's activity log after an uncertain write; not sent again")
                            for p in a.ops]
                    continue
                self._observe_verify("absent", 1)
                last = [p for p in a.ops if p.final_check]
                if last:
                    self.intents.resolve([a.op.op_id])  # certainly not applied: a replay may send it
                    code = next((p.uncertain_code for p in last if p.uncertain_code), None) or ReasonCode.UNVERIFIED
                    out += [Decision(p, "failed", reason_code=code, reason=(
                        "the write failed ambiguously as often as retries allow; the activity is not in the "
                        "lead's activity log, so it was not applied and a replay is safe"), retryable=True)
                        for p in a.ops]
                else:
                    absent.append(a)  # sent now; its intent is written again (kept until then)
        return out, absent

    def _too_early(
        self, items: list[tuple[ActivityInput, ActivityIntent]]
    ) -> tuple[list[Decision], list[tuple[ActivityInput, ActivityIntent]]]:
        """(decisions of intents too young to verify, retried when old enough; the others)."""
        out: list[Decision] = []
        now = self._now()
        ready: list[tuple[ActivityInput, ActivityIntent]] = []
        for a, intent in items:
            wait = (intent.recorded_at - now).total_seconds() + self.verify_delay_seconds
            if wait > 0:
                # A request the client gave up on may still be running at Marketo: look later.
                self._observe_verify("deferred", len(a.ops))
                for p in a.ops:
                    p.attempts -= 1  # no call was made
                out += [Decision(p, "failed", reason_code=p.uncertain_code or ReasonCode.UNVERIFIED,
                                 reason="waiting before the activity log is read", retryable=True,
                                 maybe_applied=True, retry_at=self._mono() + wait) for p in a.ops]
            else:
                ready.append((a, intent))
        if out:
            waits = [d.retry_at - self._mono() for d in out if d.retry_at is not None]
            log.info("%d custom activity operation(s) may already be in Marketo after an ambiguous answer: "
                     "held, and looked up in their leads' activity logs in %.0f–%.0f s "
                     "(KMSYNC_SINK_ACTIVITY_VERIFY_DELAY_SECONDS, docs/reference/marketo-api.md §10.4); "
                     "never sent again before that",
                     len(out), min(waits), max(waits))
        return out, ready

    def _unverified(self, p: PendingOp, f: _Failure) -> Decision:
        if p.final_check:
            # Out of attempts and still unknown: dead-lettered, the intent kept, so a replay verifies.
            return Decision(p, "failed", reason_code=ReasonCode.UNVERIFIED, reason=(
                f"the activity may be in Marketo and its activity log could not be read ({f.code}: {f.reason}); "
                "a replay looks it up before sending"), retryable=True, maybe_applied=True)
        return Decision(p, "failed", reason_code=f.code, reason=f"activity log not read: {f.reason}",
                        retryable=True, maybe_applied=True)

    def _decided(self, p: PendingOp, o: Outcome, email: str, shaped: Shaped | None) -> Decision:
        """``_noted(_schema_aware(_stale_aware(p, o, email), o), shaped)``: a record Marketo wrote with nothing
        cut is decided as answered, without the three layers (they change only failures and cut records;
        most records of most calls are neither, issue #22)."""
        if o.status != "failed" and (shaped is None or not shaped.truncated):
            return _from_outcome(p, o)
        return self._noted(self._schema_aware(self._stale_aware(p, o, email), o), shaped)

    def _stale_aware(self, p: PendingOp, o: Outcome, email: str) -> Decision:
        d = _from_outcome(p, o)
        if o.status == "failed" and o.reason_code == _LEAD_NOT_FOUND:
            # The cached id points at a lead that is gone: forget it; the retry upserts by email.
            self.cache.evict(email)
            return Decision(p, "failed", o.marketo_id, o.reason_code, o.reason, retryable=True)
        return d


#: A custom object input, the record sent for it, and how it was shaped (None: unmapped).
_ObjectRow = tuple[ObjectInput, dict[str, Any], Shaped | None]
#: A custom activity input and the record sent for it.
_ActivityRow = tuple[ActivityInput, ActivityRecord]


def _schema_failure(f: SchemaFailure) -> _Failure:
    return _Failure(f.code, f.reason, f.retryable)


async def _all_then_raise(*aws: Awaitable[None]) -> None:
    """Every call of a stage runs to its end (none is left running as an orphan when another
    fails); then the first error, if any, is raised."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _index(found: Iterable[LeadActivity]) -> dict[tuple[int, int, str], LeadActivity]:
    """(lead id, activity type id, primary attribute value) → the activity: transform emits one
    activity per lead, session and type, so these identify the operation's activity."""
    return {(f.lead_id, f.activity_type_id, f.primary_attribute_value or ""): f for f in found}


def _lead_ops(call: LeadCall) -> list[PendingOp]:
    return [p for li in call.inputs for p in li.ops]


def _plan_ops(plan: Plan) -> list[PendingOp]:
    ops = [p for c in plan.lead_calls + plan.bulk_lead_calls for li in c.inputs for p in li.ops]
    ops += [p for c in plan.status_calls for m in c.members for p in m.ops]
    ops += [p for c in plan.object_calls for i in c.items for p in i.ops]
    ops += [p for c in plan.activity_calls for a in c.items for p in a.ops]
    ops += [p for c in plan.member_data_calls for i in c.items for p in i.ops]
    return ops
