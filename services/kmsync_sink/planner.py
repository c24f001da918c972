"""The fewest calls for one window (pure).

Order (architecture.md principle 4; docs/reference/marketo-api.md §5–8):
1. Leads, deduplicated by email: one input per email per window, fields merged in offset order, so
   one upsert per email is in flight (§5.1: same-key upserts racing make duplicate leads). Emails the
   other operations need and the lead id cache does not know are upserted email-only, which also
   returns their ids.
2. Program member statuses, grouped by (program, status): the API takes one statusName per call
   (§6.2); a lead appears once per group.
3. Custom objects, grouped by object, deduplicated by the dedupe fields (two inputs with one key in
   a call answer 1036, §8.2).
4. Custom activities (insert-only, §7.1): deduplicated by op_id, and an op_id the ledger knows as
   written is not sent again.
5. Granular labels (Sync Program Member Data, §13.4), grouped by program: one input per lead, the
   highest label rank (ties: the later offset), the lead's other label ops answered by it; the
   executor sends a program's label calls after its status calls (the membership must exist).
Bulk Import API (§9), from ``bulk_min_records`` (0: never): when the window's lead upserts carrying
data reach it, leads, program members and custom objects go bulk (``use_bulk``); otherwise a custom
object whose own deduplicated upserts in the window reach it goes bulk alone (``bulk_objects``; a
historical engagement backfill has objects only). Email-only lead upserts, there to learn the lead
ids the objects' link field needs, always go through REST (bulk import returns no ids), in stage 1.
Every other group is cut into calls of at most the client's batch maximum. When the window closed on
count or bytes (a backlog), a group's last call that would carry fewer than ``min_call_records``
waits for the next window instead, so calls stay full; a window that would otherwise send nothing
sends everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TypeVar

from kmsync_contracts.base import Scalar
from kmsync_contracts.marketo_ops import (
    CustomActivity,
    CustomObjectUpsert,
    LeadUpsert,
    ProgramMemberData,
    ProgramMemberStatus,
)
from kmsync_contracts.seed import ENGAGEMENT_OBJECT_FIELDS
from kmsync_sink.pending import PendingOp

#: Custom object → its link field to the lead, filled in with the lead id (the seed's personId).
LINK_FIELDS: dict[str, str] = {
    "kalturaUserSessionEngagement": next(f.name for f in ENGAGEMENT_OBJECT_FIELDS if f.data_type == "link"),
}

#: A custom object record as Marketo dedupes it: (object API name, its dedupe fields' values).
ObjectKey = tuple[str, tuple[object, ...]]


@dataclass
class LeadInput:
    email: str
    fields: dict[str, Scalar]
    #: The LeadUpsert operations this input answers (empty: an email-only upsert to learn the id).
    ops: list[PendingOp] = field(default_factory=list)

    def record(self) -> dict[str, Scalar]:
        return {**self.fields, "email": self.email}


@dataclass
class MemberInput:
    email: str
    ops: list[PendingOp]


@dataclass
class ObjectInput:
    email: str
    record: dict[str, Scalar]
    ops: list[PendingOp]
    #: The record these upserts write (``object_key``).
    key: ObjectKey


@dataclass
class ActivityInput:
    email: str
    op: CustomActivity
    #: Every copy of this op_id in the window (a replay); they share the outcome.
    ops: list[PendingOp]


@dataclass
class MemberDataInput:
    email: str
    #: The op whose label is written (the highest rank of the lead's label ops in the window).
    op: ProgramMemberData
    #: Every label op of this lead and program in the window; they share the outcome.
    ops: list[PendingOp]


@dataclass
class LeadCall:
    inputs: list[LeadInput]


@dataclass
class StatusCall:
    program_id: int
    status_name: str
    step: int
    members: list[MemberInput]


@dataclass
class ObjectCall:
    object_name: str
    items: list[ObjectInput]


@dataclass
class ActivityCall:
    items: list[ActivityInput]


@dataclass
class MemberDataCall:
    program_id: int
    items: list[MemberDataInput]


@dataclass
class Plan:
    lead_calls: list[LeadCall] = field(default_factory=list)
    #: Lead upserts of a large window, for the Bulk Import API (§9); empty unless ``use_bulk``.
    bulk_lead_calls: list[LeadCall] = field(default_factory=list)
    status_calls: list[StatusCall] = field(default_factory=list)
    object_calls: list[ObjectCall] = field(default_factory=list)
    activity_calls: list[ActivityCall] = field(default_factory=list)
    #: Granular labels (Sync Program Member Data), sent after the same program's status calls.
    member_data_calls: list[MemberDataCall] = field(default_factory=list)
    #: Go back to the window (a short tail of a backlog; sent with a later window).
    deferred: list[PendingOp] = field(default_factory=list)
    #: Activities the ledger already knows as written: answered "skipped" without a call.
    already_written: list[PendingOp] = field(default_factory=list)
    #: Leads and program members go through the Bulk Import API (a large window).
    use_bulk: bool = False
    #: Custom objects (by API name) whose one call in ``object_calls`` is a Bulk Import job: every
    #: object when ``use_bulk``, else each object with at least ``bulk_min_records`` upserts.
    bulk_objects: set[str] = field(default_factory=set)

    @property
    def calls(self) -> int:
        return (len(self.lead_calls) + len(self.bulk_lead_calls) + len(self.status_calls)
                + len(self.object_calls) + len(self.activity_calls) + len(self.member_data_calls))

    def records_per_call(self) -> list[int]:
        return (
            [len(c.inputs) for c in self.lead_calls + self.bulk_lead_calls]
            + [len(c.members) for c in self.status_calls]
            + [len(c.items) for c in self.object_calls]
            + [len(c.items) for c in self.activity_calls]
            + [len(c.items) for c in self.member_data_calls]
        )


T = TypeVar("T")


def chunk(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _split_tail(items: list[T], size: int, min_tail: int) -> tuple[list[list[T]], list[T]]:
    """Chunks of ``size``; a last chunk shorter than ``min_tail`` is returned apart (to defer)."""
    chunks = chunk(items, size)
    if chunks and min_tail > 0 and len(chunks[-1]) < min(min_tail, size):
        return chunks[:-1], chunks[-1]
    return chunks, []


@dataclass(frozen=True)
class PlannerConfig:
    batch_max: int
    #: 0 sends every tail; > 0 defers short tails (only when the window closed on count/bytes).
    min_call_records: int = 0
    #: Lead upserts with data from which leads, program members and custom objects go bulk, and
    #: deduplicated upserts of one custom object from which that object goes bulk (0: never).
    bulk_min_records: int = 0


def plan_window(
    window: list[PendingOp],
    config: PlannerConfig,
    known_lead: Callable[[str], bool],
    already_written: Callable[[str], bool] = lambda op_id: False,
) -> Plan:
    plan = _plan(window, config, known_lead, already_written, config.min_call_records)
    if plan.calls == 0 and plan.deferred:
        plan = _plan(window, config, known_lead, already_written, 0)
    return plan


def _plan(
    window: list[PendingOp],
    config: PlannerConfig,
    known_lead: Callable[[str], bool],
    already_written: Callable[[str], bool],
    min_tail: int,
) -> Plan:
    plan = Plan()
    ordered = sorted(window, key=_SOURCE)
    rest = _by_kind(_plan_leads(plan, ordered, config, known_lead, min_tail))
    if not rest.keys() <= _AFTER_LEADS:  # a kind with no step would be dropped without an outcome
        raise ValueError(f"planner: no step plans operations of kind {sorted(rest.keys() - _AFTER_LEADS)}")
    # Each step reads only its own kind (in offset order), not the whole window (issue #22).
    _plan_statuses(plan, rest.get("program_member_status", []), config, min_tail)
    _plan_objects(plan, rest.get("custom_object_upsert", []), config, min_tail)
    _plan_activities(plan, rest.get("custom_activity", []), config, already_written, min_tail)
    _plan_member_data(plan, rest.get("program_member_data", []), config, min_tail)
    return plan


#: The kinds planned after leads, each by its own step below; with lead_upsert, every OperationKind
#: (tests/marketo_sink/test_planner.py checks it, so a kind the contract gains must get a step).
_AFTER_LEADS = frozenset({"program_member_status", "custom_object_upsert", "custom_activity", "program_member_data"})


#: An operation's Kafka position, the planner's order (attrgetter: no Python call per operation sorted).
_SOURCE = attrgetter("source")


def _by_kind(ops: list[PendingOp]) -> dict[str, list[PendingOp]]:
    out: dict[str, list[PendingOp]] = {}
    for p in ops:
        kind = p.op.kind
        group = out.get(kind)
        if group is None:
            out[kind] = [p]
        else:
            group.append(p)
    return out


def _plan_leads(
    plan: Plan, ordered: list[PendingOp], config: PlannerConfig, known_lead: Callable[[str], bool], min_tail: int
) -> list[PendingOp]:
    """1. Leads, one input per email. Returns the other operations, less those deferred with their lead."""
    leads: dict[str, LeadInput] = {}
    rest: list[PendingOp] = []
    for p in ordered:
        if isinstance(p.op, LeadUpsert):
            entry = leads.get(p.op.email)
            if entry is None:  # not setdefault: that builds an input per upsert (issue #22)
                entry = leads[p.op.email] = LeadInput(p.op.email, {})
            fields = p.op.fields
            # The email is the lookup key, never a field to write; most upserts carry none (issue #22).
            entry.fields.update({k: v for k, v in fields.items() if k != "email"} if "email" in fields else fields)
            entry.ops.append(p)
        else:
            rest.append(p)
    looked_up: set[str] = set()  # an email the cache did not know: asked once per window (issue #22)
    for p in rest:
        email = p.op.email
        if email not in leads and email not in looked_up:
            if known_lead(email):
                looked_up.add(email)
            else:
                leads[email] = LeadInput(email, {})
    lead_inputs = list(leads.values())
    # Bulk import returns no lead ids, so only upserts that carry data count towards it; email-only
    # upserts (there to learn ids) always go through REST.
    with_data = [li for li in lead_inputs if li.ops]
    plan.use_bulk = config.bulk_min_records > 0 and len(with_data) >= config.bulk_min_records
    lead_tail: list[LeadInput] = []
    if plan.use_bulk:
        plan.bulk_lead_calls = [LeadCall(with_data)]
        lead_inputs = [li for li in lead_inputs if not li.ops]
    lead_chunks, lead_tail = _split_tail(lead_inputs, config.batch_max, min_tail)
    plan.lead_calls = [LeadCall(c) for c in lead_chunks]
    deferred_emails = {li.email for li in lead_tail}
    for li in lead_tail:
        plan.deferred.extend(li.ops)
    if not deferred_emails:
        return rest
    plan.deferred.extend(p for p in rest if p.op.email in deferred_emails)
    return [p for p in rest if p.op.email not in deferred_emails]


def _plan_statuses(plan: Plan, rest: list[PendingOp], config: PlannerConfig, min_tail: int) -> None:
    """2. Program member statuses by (program, status)."""
    groups: dict[tuple[int, str], dict[str, MemberInput]] = {}
    steps: dict[tuple[int, str], int] = {}
    for p in rest:
        if isinstance(p.op, ProgramMemberStatus):
            key = (p.op.program_id, p.op.status_name)
            steps[key] = p.op.step
            members = groups.setdefault(key, {})
            members.setdefault(p.op.email, MemberInput(p.op.email, [])).ops.append(p)
    # Lower steps first within a program (the executor keeps this order): a lead that registers and
    # attends within one window gets both changes, in order, as its Marketo triggers expect. A lead
    # whose lower status waits for the next window waits with its higher ones, or Marketo would skip
    # the lower one (1037, §6.1: progression is one-way).
    held: set[tuple[int, str]] = set()
    for key in sorted(groups, key=lambda k: (k[0], steps[k], k[1])):
        members_list = []
        for m in groups[key].values():
            if (key[0], m.email) in held:
                plan.deferred.extend(m.ops)
            else:
                members_list.append(m)
        if not members_list:
            continue
        tail: list[MemberInput] = []
        if plan.use_bulk:
            chunks = [members_list]
        else:
            chunks, tail = _split_tail(members_list, config.batch_max, min_tail)
        plan.status_calls += [StatusCall(key[0], key[1], steps[key], c) for c in chunks]
        plan.deferred.extend(_ops_of(m.ops for m in tail))
        held.update((key[0], m.email) for m in tail)


def _plan_objects(plan: Plan, rest: list[PendingOp], config: PlannerConfig, min_tail: int) -> None:
    """3. Custom objects by object, deduplicated by the dedupe fields."""
    objects: dict[str, dict[tuple[object, ...], ObjectInput]] = {}
    for p in rest:
        if isinstance(p.op, CustomObjectUpsert):
            key = record_key(p)
            items = objects.setdefault(p.op.object_name, {})
            found = items.get(key[1])
            if found is None:
                items[key[1]] = ObjectInput(p.op.email, dict(p.op.record), [p], key)
            else:
                found.record.update(p.op.record)
                found.ops.append(p)
    for name in sorted(objects):
        obj_items = list(objects[name].values())
        obj_tail: list[ObjectInput] = []
        if plan.use_bulk or 0 < config.bulk_min_records <= len(obj_items):
            plan.bulk_objects.add(name)
            obj_chunks = [obj_items]
        else:
            obj_chunks, obj_tail = _split_tail(obj_items, config.batch_max, min_tail)
        plan.object_calls += [ObjectCall(name, c) for c in obj_chunks]
        plan.deferred.extend(_ops_of(i.ops for i in obj_tail))


def _plan_activities(
    plan: Plan, rest: list[PendingOp], config: PlannerConfig, already_written: Callable[[str], bool], min_tail: int
) -> None:
    """4. Custom activities, once per op_id; one the ledger knows as written is answered without a call."""
    acts: dict[str, ActivityInput] = {}
    for p in rest:
        if isinstance(p.op, CustomActivity):
            if already_written(p.op.op_id):
                plan.already_written.append(p)
            elif p.op.op_id in acts:
                acts[p.op.op_id].ops.append(p)
            else:
                acts[p.op.op_id] = ActivityInput(p.op.email, p.op, [p])
    act_chunks, act_tail = _split_tail(list(acts.values()), config.batch_max, min_tail)
    plan.activity_calls = [ActivityCall(c) for c in act_chunks]
    plan.deferred.extend(_ops_of(a.ops for a in act_tail))


def _plan_member_data(plan: Plan, rest: list[PendingOp], config: PlannerConfig, min_tail: int) -> None:
    """5. Granular labels by program, one input per lead (the highest rank; ties: the later offset)."""
    programs: dict[int, dict[str, MemberDataInput]] = {}
    for p in rest:  # in offset order
        if isinstance(p.op, ProgramMemberData):
            leads = programs.setdefault(p.op.program_id, {})
            found = leads.get(p.op.email)
            if found is None:
                leads[p.op.email] = MemberDataInput(p.op.email, p.op, [p])
                continue
            found.ops.append(p)
            if tuple(p.op.label_rank) >= tuple(found.op.label_rank):
                found.op = p.op
    # A lead whose status waits for the next window waits with its label (the membership may not exist yet).
    held = {(p.op.program_id, p.op.email) for p in plan.deferred if isinstance(p.op, ProgramMemberStatus)}
    for program_id in sorted(programs):
        items = []
        for item in programs[program_id].values():
            if (program_id, item.email) in held:
                plan.deferred.extend(item.ops)
            else:
                items.append(item)
        chunks, tail = _split_tail(items, config.batch_max, min_tail)
        plan.member_data_calls += [MemberDataCall(program_id, c) for c in chunks]
        plan.deferred.extend(_ops_of(i.ops for i in tail))


def object_key(op: CustomObjectUpsert) -> ObjectKey:
    """The record an upsert writes (§8.2 dedupe fields). The link field is filled in later with
    the lead id, so the lead (email) stands in for it."""
    link = LINK_FIELDS.get(op.object_name)
    return op.object_name, tuple(("lead", op.email) if f == link else op.record.get(f) for f in op.dedupe_fields)


def record_key(p: PendingOp) -> ObjectKey:
    """``object_key`` of a custom object upsert's operation, remembered on the pending operation (its
    operation never changes)."""
    key = p.record_key
    if key is None:
        key = p.record_key = object_key(p.op)  # type: ignore[arg-type]
    return key


def _ops_of(groups: Iterable[list[PendingOp]]) -> list[PendingOp]:
    return [p for g in groups for p in g]


def link_record(object_name: str, record: Mapping[str, Scalar], lead_id: int) -> dict[str, Scalar]:
    """The custom object record with its link field to the lead set (when the object has one)."""
    out = dict(record)
    link = LINK_FIELDS.get(object_name)
    if link is not None:
        out[link] = lead_id
    return out
