"""The backfill lane through transform (issue #18): a record marked backfill has its operations on
marketo.ops.backfill.v1, byte for byte what the live lane would carry, and the forward-only state is one
for both lanes (an older backfill status after a newer live one makes no operation)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from kmsync_contracts.codecs import decode_model
from kmsync_contracts.marketo_ops import ProgramMemberStatus
from kmsync_contracts.topics import ATTENDEE_STATUS, POLL_RESPONSES
from kmsync_transform.keyed import Envelope, KeyedSteps, Output
from kmsync_transform.metrics import TransformMetrics

from .golden_inputs import NOW, _json, inputs, sources, status, tenants_config
from .test_keyed_steps import KeyedStores, message_key


def _run(items: Sequence[tuple[object, bytes]], lane: str | None) -> list[Output]:
    s = KeyedSteps(tenants_config(), TransformMetrics(), clock=lambda: NOW, retention=timedelta(days=30))
    stores, out = KeyedStores(), []
    for (spec, raw), source in zip(items, sources(items), strict=True):  # type: ignore[arg-type]
        if lane is not None:
            try:
                raw = json.dumps({**json.loads(raw), "lane": lane}).encode()
            except (ValueError, TypeError):
                pass  # the undecodable inputs stay as they are
        if spec is POLL_RESPONSES:
            envelope = s.route_poll(raw, source)
            crossed = Envelope.decode(envelope.key, envelope.encode())
            out += s.poll(crossed, stores(crossed.key))
        else:
            out += s.record(spec, raw, source, stores(message_key(raw)))  # type: ignore[arg-type]
    return out


def test_backfill_records_have_their_operations_on_the_backfill_topic() -> None:
    items = inputs()
    live, backfill = _run(items, None), _run(items, "backfill")
    live_ops = [(k, v) for dest, k, v in live if dest == "ops"]
    assert live_ops and not [o for o in live if o[0] == "ops_backfill"]
    assert [(k, v) for dest, k, v in backfill if dest == "ops_backfill"] == live_ops  # same bytes, other topic
    assert not [o for o in backfill if o[0] == "ops"]


def test_an_older_backfill_status_after_a_newer_live_one_makes_no_operation() -> None:
    items: list[tuple[object, bytes]] = [
        (ATTENDEE_STATUS, _json(status("attended", minutes=30))),  # live, now
        (ATTENDEE_STATUS, _json({**status("registered", minutes=1), "lane": "backfill"})),  # history, older
    ]
    out = _run(items, None)
    statuses = [decode_model(ProgramMemberStatus, v) for dest, _, v in out if dest in ("ops", "ops_backfill")
                and b"program_member_status" in v]
    assert [s.status_name for s in statuses] == ["Attended"]
    assert not [o for o in out if o[0] == "ops_backfill" and b"program_member_status" in o[2]]
    assert [o for o in out if o[0] == "decisions" and b"forward_only_skip" in o[2]]  # visible
