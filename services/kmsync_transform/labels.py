"""The granular label's own forward-only order and its operation (docs/design/granular-statuses.md §1.3).

The label may move while the channel status stays (Pre-event visit → During-event visit are both
Attended), so it is judged apart from the status: a label whose rank (kmsync_contracts.granular.
label_rank) is lower than the member's is a regression and is not written; the same label again is a
repeat; anything else (a higher rank, or another label of equal rank: the latest wins, as Marketo
does for statuses of equal step, docs/reference/marketo-api.md §6.1) becomes a ProgramMemberData op.

State: the member's label lives in the statuses table under ``label|<person key>`` (next to its
status entry, which forward_only.py owns), as {"label": ..., "rank": [step, subrank]}. A label is
also never lower than the member's status step (read from that entry, after the status was judged):
"Confirmed email" after Attended is a regression even when Attended had no label. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kmsync_config.tenants import EventConfig
from kmsync_contracts.granular import LabelRank, label_rank
from kmsync_contracts.kaltura_records import AttendanceStatus, AttendeeStatus
from kmsync_contracts.marketo_ops import ProgramMemberData
from kmsync_contracts.outcomes import TransformDecision
from kmsync_transform.built import LABEL
from kmsync_transform.decisions import label_skip, label_undecided
from kmsync_transform.forward_only import person_key
from kmsync_transform.op_ids import op_id
from kmsync_transform.routing import RoutedStatus
from kmsync_transform.status_map import LabelRules, map_status


class LabelVerdict(StrEnum):
    NONE = "none"  # the record has no label (Created, Participated, a visit after the event)
    UNDECIDED = "undecided"  # attended, but the event's start is unknown
    FORWARD = "forward"
    REPEAT = "repeat"
    REGRESSION = "regression"


def judge_label(current: tuple[str, LabelRank] | None, label: str, rank: LabelRank,
                floor: LabelRank = (0, 0)) -> LabelVerdict:
    """Compare a new label and its rank with the member's current one; ``floor`` is (the member's status
    step, 0): a label never trails the status the member has (Confirmed email after Attended is lower)."""
    if current is not None and label == current[0]:
        return LabelVerdict.REPEAT
    if rank < max(floor, current[1] if current is not None else floor):
        return LabelVerdict.REGRESSION
    return LabelVerdict.FORWARD


def label_key(member_key: str) -> str:
    return f"label|{member_key}"


class LabelOrder:
    """The member's current label and rank, in the statuses table under ``label_key``."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table

    def current(self, member_key: str) -> tuple[str, LabelRank] | None:
        value = self.table.get(label_key(member_key))
        if not value:
            return None
        step, sub = value["rank"]
        return str(value["label"]), (int(step), int(sub))

    def status_floor(self, member_key: str) -> LabelRank:
        """(the step of the member's status, 0): the status entry forward_only.py keeps under the member key."""
        value = self.table.get(member_key)
        return (int(value["step"]), 0) if value else (0, 0)

    def advance(self, member_key: str, label: str, rank: LabelRank) -> LabelVerdict:
        current = self.current(member_key)
        verdict = judge_label(current, label, rank, self.status_floor(member_key))
        if verdict is LabelVerdict.FORWARD or (
            verdict is LabelVerdict.REPEAT and current is not None and rank > current[1]
        ):
            # A repeat at a higher step (SSO login with Registered, then with Confirmed) keeps the
            # higher rank, so a later lower label is still judged against the status it came with.
            self.table[label_key(member_key)] = {"label": label, "rank": list(rank)}
        return verdict


def event_schedule(record: AttendeeStatus, event: EventConfig) -> tuple[datetime | None, datetime | None]:
    """The event's (start, end): stamped on the record by ingest, else the tenants file's (§2)."""
    if record.event_start is not None:
        return record.event_start, record.event_end
    if event.schedule is not None:
        return event.schedule.start, event.schedule.end
    return None, None


@dataclass(frozen=True)
class LabelStep:
    verdict: LabelVerdict
    op: ProgramMemberData | None = None
    #: For a regression: the member's label and the one not written.
    from_label: str | None = None
    to_label: str | None = None


def label_step(order: LabelOrder, routed: RoutedStatus, event: EventConfig, now: datetime) -> LabelStep:
    """Judge the record's label and, when it moves forward, the operation that writes it."""
    record, email, munchkin = routed.record, routed.email, routed.munchkin_id
    start, end = event_schedule(record, event)
    rules = LabelRules(event.label_overrides, None if event.visit_rules.after_event_visit == "none"
                       else event.visit_rules.after_event_visit)
    mapped = map_status(record, event.status_overrides, start, end, rules)
    if not event.outputs.program_status:
        return LabelStep(LabelVerdict.NONE)
    if mapped.granular is None:
        undecided = (record.status is AttendanceStatus.ATTENDED and start is None
                     and AttendanceStatus.ATTENDED not in event.label_overrides)
        return LabelStep(LabelVerdict.UNDECIDED if undecided else LabelVerdict.NONE)
    member = person_key(munchkin, event.program_id, email)
    rank = label_rank(mapped.step, mapped.granular)
    current = order.current(member)
    verdict = order.advance(member, mapped.granular, rank)
    if verdict is LabelVerdict.REGRESSION:
        return LabelStep(verdict, from_label=current[0] if current else None, to_label=mapped.granular)
    if verdict is not LabelVerdict.FORWARD:
        return LabelStep(verdict)
    # Built without validating again when its values pass the contract as they are (built.py): a label of
    # the tenants file's overrides outside the seed's is refused by the contract's validator, as before.
    return LabelStep(verdict, LABEL.build(
        op_id=op_id("program_member_data", munchkin, event.program_id, email, mapped.granular,
                    record.status_time.isoformat()),
        munchkin_id=munchkin, partner_id=record.partner_id, virtual_event_id=record.virtual_event_id,
        email=email, source_time=record.status_time, emitted_at=now,
        program_id=event.program_id, granular_status=mapped.granular, label_rank=rank))


def label_decision(step: LabelStep, routed: RoutedStatus, program_id: int, now: datetime, *,
                   status_regressed: bool, status_moved: bool) -> TransformDecision | None:
    """What transform.decisions.v1 says about the label: a lower label (unless the status was lower too,
    which is decided already), or an attended status with no schedule, once, when the member reaches
    Attended (docs/design/granular-statuses.md §1.3)."""
    who = (routed.record, routed.source, now)
    if step.verdict is LabelVerdict.REGRESSION and not status_regressed and step.from_label and step.to_label:
        return label_skip(*who, email=routed.email, munchkin_id=routed.munchkin_id, program_id=program_id,
                          from_label=step.from_label, to_label=step.to_label)
    if step.verdict is LabelVerdict.UNDECIDED and status_moved:
        return label_undecided(*who, email=routed.email, munchkin_id=routed.munchkin_id, program_id=program_id)
    return None
