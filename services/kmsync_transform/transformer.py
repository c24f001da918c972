"""Stateful but pure: a routed record and the state tables → Marketo operations.

State lives in mutable mappings (staged views of the app's tables, dicts in unit tests): the
highest status per member, the activity ledger, and poll slots/answers. No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kmsync_common.clock import SystemClock
from kmsync_config.lead_fields import LeadSource
from kmsync_config.tenants import EventConfig, TenantsConfig
from kmsync_contracts.marketo_ops import CustomObjectUpsert, LeadUpsert, MarketoOperation
from kmsync_contracts.outcomes import DeadLetter, TransformDecision
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.seed import (
    ENGAGEMENT_ACTIVITY_API_NAME,
    ENGAGEMENT_OBJECT_API_NAME,
    ENGAGEMENT_OBJECT_DEDUPE_FIELDS,
    MAX_POLLS_PER_SESSION,
    POLLS_OBJECT_API_NAME,
    POLLS_OBJECT_DEDUPE_FIELDS,
)
from kmsync_transform.built import STATUS, engagement_builders
from kmsync_transform.dead_letters import dead_letter
from kmsync_transform.decisions import activity_once, poll_moved, status_skip, too_many_polls, truncated
from kmsync_transform.engagement import (
    RateScale,
    activity_attributes,
    engagement_values,
    object_record,
    session_config,
)
from kmsync_transform.forward_only import ForwardOnly, Verdict, person_key
from kmsync_transform.labels import LabelOrder, LabelVerdict, label_decision, label_step
from kmsync_transform.lead_fields import LeadMemory, lead_field_values
from kmsync_transform.ledger import ActivityLedger, activity_op_id
from kmsync_transform.op_ids import content_fingerprint, op_id
from kmsync_transform.polls import PollSlots, session_key
from kmsync_transform.routing import UNCONFIGURED, Routed, RoutedEngagement, RoutedPoll, RoutedStatus, event_for
from kmsync_transform.status_map import map_status


@dataclass
class StepResult:
    tenant: str
    ops: list[MarketoOperation] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Statuses dropped because the member already has this or a higher step.
    regressions: int = 0
    repeats: int = 0
    #: Activities not emitted because the ledger already holds them.
    ledger_hits: int = 0
    #: What was dropped or changed, for transform.decisions.v1 (decisions.py).
    decisions: list[TransformDecision] = field(default_factory=list)
    #: Granular labels not written: lower in the label order than the member's (labels.py).
    label_regressions: int = 0
    #: Lead upserts sent because the mapped lead fields changed while the status stayed (lead_fields.py).
    lead_changes: int = 0


@dataclass
class TransformState:
    statuses: MutableMapping[str, Any]
    ledger: MutableMapping[str, Any]
    poll_slots: MutableMapping[str, Any]
    poll_answers: MutableMapping[str, Any]

    @classmethod
    def in_memory(cls) -> TransformState:
        return cls({}, {}, {}, {})


class Transformer:
    def __init__(
        self,
        tenants: TenantsConfig,
        state: TransformState,
        *,
        rate_scale: RateScale = "auto",
        engagement_dedupe_fields: tuple[str, ...] = ENGAGEMENT_OBJECT_DEDUPE_FIELDS,
        polls_dedupe_fields: tuple[str, ...] = POLLS_OBJECT_DEDUPE_FIELDS,
        polls_clear_empty_slots: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.tenants = tenants
        self.forward_only = ForwardOnly(state.statuses)
        self.labels = LabelOrder(state.statuses)
        self.leads = LeadMemory(state.statuses)
        self.ledger = ActivityLedger(state.ledger)
        self.polls = PollSlots(state.poll_slots, state.poll_answers, clear_left_slots=polls_clear_empty_slots)
        self.rate_scale = rate_scale
        self.engagement_dedupe_fields = engagement_dedupe_fields
        self.polls_dedupe_fields = polls_dedupe_fields
        self.clock = clock or SystemClock().now

    def apply(self, routed: Routed) -> StepResult:
        event = event_for(self.tenants, routed)
        now = self.clock()
        if event is None:  # the tenants file changed between the two stages
            return StepResult(UNCONFIGURED, dead_letters=[dead_letter(
                ReasonCode.EVENT_NOT_CONFIGURED,
                f"virtual event {routed.record.virtual_event_id} is no longer in the tenants file",
                routed.source, routed.record, now)])
        result = StepResult(event.name)
        if isinstance(routed, RoutedStatus):
            self._status(routed, event.program_id, event.status_overrides, event.outputs.program_status, now,
                         result, event.lead_sources)
            self._label(routed, event, now, result)
        elif isinstance(routed, RoutedEngagement):
            self._engagement(routed, event, now, result)
        else:
            self._poll(routed, event, now, result)
        return result

    # -- statuses ----------------------------------------------------------------------------------
    def _status(self, routed: RoutedStatus, program_id: int, overrides: Any, enabled: bool, now: datetime,
                result: StepResult, lead_sources: Mapping[str, LeadSource]) -> None:
        record, email, munchkin = routed.record, routed.email, routed.munchkin_id
        mapped = map_status(record, overrides)
        member = person_key(munchkin, program_id, email)
        verdict = self.forward_only.advance(member, mapped.name, mapped.step)
        if verdict is Verdict.REGRESSION:  # an older record: its lead data may be older too, so not sent
            result.regressions += 1
            result.decisions.append(self._skipped(routed, program_id, (mapped.name, mapped.step), now))
            return
        fields = lead_field_values(record, lead_sources)  # the event's lead_fields (lead_fields.py)
        changed = self.leads.update(member, fields)
        base = {
            "munchkin_id": munchkin, "partner_id": record.partner_id,
            "virtual_event_id": record.virtual_event_id, "email": email,
            "source_time": record.status_time, "emitted_at": now,
        }
        # The lead upsert is validated (built.py: it costs pydantic-core less than the fast path); the status is
        # built without validating again what passes the contract as it is.
        lead = LeadUpsert
        if verdict is Verdict.REPEAT:
            result.repeats += 1
            if changed is not None and fields:  # a profile edit with the status unchanged
                result.lead_changes += 1
                result.ops.append(lead(
                    op_id=op_id("lead_upsert", munchkin, email, record.partner_id, record.virtual_event_id,
                                record.user_id, record.status.value, record.source_time.isoformat(), changed),
                    fields=dict(fields), **base))
            return
        result.ops.append(lead(
            op_id=op_id("lead_upsert", munchkin, email, record.partner_id, record.virtual_event_id,
                        record.user_id, record.status.value, record.status_time.isoformat()),
            fields=dict(fields), **base))
        if enabled:
            result.ops.append(STATUS.build(
                op_id=op_id("program_member_status", munchkin, program_id, email, mapped.name),
                program_id=program_id, status_name=mapped.name, step=mapped.step,
                granular_status=mapped.granular, **base))

    def _label(self, routed: RoutedStatus, event: EventConfig, now: datetime, result: StepResult) -> None:
        """The granular label, judged apart from the status (labels.py): after the status ops."""
        step = label_step(self.labels, routed, event, now)
        if step.op is not None:
            result.ops.append(step.op)
        elif step.verdict is LabelVerdict.REGRESSION:
            result.label_regressions += 1
        # A label below the member's is decided only when the status was not lower (that one is decided already).
        decided = label_decision(step, routed, event.program_id, now, status_regressed=result.regressions > 0,
                                 status_moved=not (result.regressions or result.repeats))
        if decided is not None:
            result.decisions.append(decided)

    def _skipped(self, routed: RoutedStatus, program_id: int, new: tuple[str, int], now: datetime) -> TransformDecision:
        """The forward_only_skip decision of a regression, naming the status the member keeps."""
        key = person_key(routed.munchkin_id, program_id, routed.email)
        return status_skip(routed.record, routed.source, now, email=routed.email, munchkin_id=routed.munchkin_id,
                           program_id=program_id, current=self.forward_only.current(key) or new, new=new)

    # -- engagement --------------------------------------------------------------------------------
    def _engagement(self, routed: RoutedEngagement, event: EventConfig, now: datetime, result: StepResult) -> None:
        snap, email, munchkin = routed.record, routed.email, routed.munchkin_id
        base = {
            "munchkin_id": munchkin, "partner_id": snap.partner_id,
            "virtual_event_id": snap.virtual_event_id, "email": email,
            "source_time": snap.source_time, "emitted_at": now,
        }
        values: dict[str, object] | None = None  # the object and the activity share them
        build_object, build_activity = engagement_builders(session_config(event, snap.entry_id))  # built.py
        object_op_id: str | None = None
        if event.outputs.custom_objects:
            values = engagement_values(snap, email, event, self.rate_scale)
            record = object_record(values)
            object_op_id = op_id("custom_object_upsert", munchkin, ENGAGEMENT_OBJECT_API_NAME,
                                 snap.virtual_event_id, snap.entry_id, email, content_fingerprint(record))
            result.ops.append(build_object.build(
                op_id=object_op_id, object_name=ENGAGEMENT_OBJECT_API_NAME,
                dedupe_fields=self.engagement_dedupe_fields, record=record, **base))
        if event.outputs.custom_activities and snap.is_final:
            activity_id = activity_op_id(munchkin, snap.virtual_event_id, snap.entry_id, email)
            if not self.ledger.claim(activity_id, now.isoformat()):
                result.ledger_hits += 1
                result.decisions.append(activity_once(
                    snap, routed.source, now, email=email, munchkin_id=munchkin, program_id=event.program_id,
                    activity_op_id=activity_id, object_op_id=object_op_id))
                return
            result.ops.append(build_activity.build(
                op_id=activity_id, activity_type=ENGAGEMENT_ACTIVITY_API_NAME,
                primary_attribute_value=snap.entry_id, activity_date=snap.source_time,
                attributes=activity_attributes(
                    values if values is not None else engagement_values(snap, email, event, self.rate_scale)),
                **base))

    # -- polls -------------------------------------------------------------------------------------
    def _poll(self, routed: RoutedPoll, event: EventConfig, now: datetime, result: StepResult) -> None:
        response, email, munchkin = routed.record, routed.email, routed.munchkin_id
        if not event.outputs.custom_objects:
            return  # legacy tenants have no custom objects; the seed has no poll activity
        outcome = self.polls.apply(session_key(munchkin, response.virtual_event_id, response.entry_id),
                                   email, response)
        if outcome.slot is None:
            self._no_slot(routed, event.program_id, now, result)
            return
        if not outcome.changed or outcome.record is None:
            result.repeats += 1
            return
        op = CustomObjectUpsert(
            op_id=op_id("custom_object_upsert", munchkin, POLLS_OBJECT_API_NAME, response.virtual_event_id,
                        response.entry_id, email, content_fingerprint(outcome.record)),
            munchkin_id=munchkin, partner_id=response.partner_id,
            virtual_event_id=response.virtual_event_id, email=email,
            source_time=response.answered_at or response.source_time, emitted_at=now,
            object_name=POLLS_OBJECT_API_NAME, dedupe_fields=self.polls_dedupe_fields,
            record=outcome.record)
        result.ops.append(op)
        result.decisions += [truncated(response, routed.source, now, email=email, munchkin_id=munchkin,
                                       program_id=event.program_id, op_id=op.op_id, field=name,
                                       original_length=original, kept_length=kept)
                             for name, original, kept in outcome.cuts]
        if outcome.moved_from is not None:
            result.decisions.append(poll_moved(
                response, routed.source, now, email=email, munchkin_id=munchkin, program_id=event.program_id,
                op_id=op.op_id, poll_id=response.poll_id, from_position=outcome.moved_from, to_position=outcome.slot))

    def _no_slot(self, routed: RoutedPoll, program_id: int, now: datetime, result: StepResult) -> None:
        """A poll past poll_10: a too_many_polls decision. A record without a position (the legacy
        numbering by arrival) is also dead-lettered, as before positions existed."""
        response = routed.record
        position = response.poll_position or MAX_POLLS_PER_SESSION + 1
        result.decisions.append(too_many_polls(
            response, routed.source, now, email=routed.email, munchkin_id=routed.munchkin_id,
            program_id=program_id, poll_id=response.poll_id, position=position, slots=MAX_POLLS_PER_SESSION))
        if response.poll_position is None:
            result.dead_letters.append(dead_letter(
                ReasonCode.TOO_MANY_POLLS,
                f"session {response.entry_id} already has {MAX_POLLS_PER_SESSION} polls, the most "
                f"{POLLS_OBJECT_API_NAME} can hold (poll_1..poll_{MAX_POLLS_PER_SESSION}); "
                f"poll {response.poll_id} has no slot",
                routed.source, response, now))
