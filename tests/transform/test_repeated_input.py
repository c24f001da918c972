"""Input read twice: what transform emits the second time.

Ingest ends a page its transactional id left open with a *committed* transaction (services/kmsync_ingest/README.md,
"left open"): when the coordinator had aborted that page, its records are delivered and the next pull delivers them
again, at later offsets. The README says what that costs: a repeated read and repeated object calls, never a second
activity or a status moved. This pins what that rests on: statuses, lead fields and custom activities are not emitted again; custom object upserts are emitted again
under the same operation ids (createOrUpdate by the object's dedupe fields, so Marketo ends the same); a bad record is
dead-lettered again."""

from __future__ import annotations

import json
from typing import Any

from kmsync_contracts.topics import POLL_RESPONSES
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.keyed import Envelope, KeyedSteps, Output
from kmsync_transform.metrics import TransformMetrics

from .golden_inputs import inputs, sources
from .test_keyed_steps import KeyedStores, message_key, steps


def _pass(s: KeyedSteps, stores: KeyedStores, offset_shift: int) -> list[Output]:
    """Every golden input once, at its offset + ``offset_shift`` (a repeat comes at later offsets)."""
    out: list[Output] = []
    for (spec, raw), src in zip(inputs(), sources(inputs()), strict=True):
        source = SourceRef(topic=src.topic, partition=src.partition, offset=src.offset + offset_shift, key=src.key)
        if spec is POLL_RESPONSES:
            routed = s.route_poll(raw, source)
            envelope = Envelope.decode(routed.key, routed.encode())
            out += s.poll(envelope, stores(envelope.key))
        else:
            out += s.record(spec, raw, source, stores(message_key(raw)))
    return out


def _ops(outputs: list[Output]) -> list[dict[str, Any]]:
    return [json.loads(value) for dest, _, value in outputs if dest == "ops"]


def test_input_read_twice_writes_nothing_new() -> None:
    s, stores = steps(TransformMetrics()), KeyedStores()
    first = _pass(s, stores, 0)
    again = _pass(s, stores, 1_000)
    first_ops, again_ops = _ops(first), _ops(again)
    kinds = {op["kind"] for op in first_ops}
    assert {"lead_upsert", "program_member_status", "program_member_data", "custom_activity",
            "custom_object_upsert"} <= kinds  # the golden inputs exercise every kind
    # No operation the first pass did not emit: the same ids (they are derived from content, not from offsets or
    # time), so nothing Marketo has not been sent already.
    assert {op["op_id"] for op in again_ops} <= {op["op_id"] for op in first_ops}
    # Only idempotent upserts come again; statuses, lead fields and insert-only activities do not.
    assert again_ops and {op["kind"] for op in again_ops} == {"custom_object_upsert"}
    first_letters = [v for dest, _, v in first if dest == "dlq"]
    assert len([v for dest, _, v in again if dest == "dlq"]) == len(first_letters) > 0
