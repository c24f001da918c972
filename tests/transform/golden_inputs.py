"""A fixed, varied set of input records and what transform's pure path makes of them, as text.

Used by test_golden_output.py (pins the exact bytes) and bench_pure_path.py (rows/s). Self-contained
on purpose: its tenants and records do not follow conftest.py, so the golden file only changes when
transform's output does. Regenerate the golden file only for an intended output change:

    .venv/bin/python tests/transform/golden_inputs.py > tests/transform/golden_pure_path.txt
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiokafka import ConsumerRecord

from kmsync_config.tenants import TenantsConfig, parse_tenants
from kmsync_contracts.codecs import encode
from kmsync_contracts.topics import ATTENDEE_STATUS, POLL_RESPONSES, SESSION_ENGAGEMENT, TopicSpec
from kmsync_transform.app import TransformWorker
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.metrics import TransformMetrics
from kmsync_transform.routing import route
from kmsync_transform.settings import TransformSettings
from kmsync_transform.state import Tables
from kmsync_transform.transformer import Transformer, TransformState

NOW = datetime(2026, 11, 27, 10, 30, 15, 123456, tzinfo=UTC)
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
BERLIN = timezone(timedelta(hours=1))
PARTNER = 100
MAIN, LEGACY, OVERRIDES, OBJECTS_ONLY, NO_STATUS, OTHER_INSTANCE = 200, 300, 400, 500, 600, 700
BATCH = 7  # inputs per batch: the state records are written at each batch's end, as the app does

TENANTS: dict[str, Any] = {
    "marketo_instances": {
        "main": {"munchkin_id": "123-ABC-456", "endpoint": "http://127.0.0.1:1", "client_id": "id",
                 "client_secret": {"env": "KMSYNC_TEST_UNUSED_SECRET"}},
        "emea": {"munchkin_id": "987-ZYX-654", "endpoint": "http://127.0.0.1:1", "client_id": "id",
                 "client_secret": {"env": "KMSYNC_TEST_UNUSED_SECRET"}},
    },
    "events": [
        {"name": "acme-summit", "partner_id": PARTNER, "virtual_event_id": MAIN, "marketo_instance": "main",
         "program_id": 1001,
         "sessions": [{"entry_id": "0_keynote", "name": "Keynote", "channel_id": 7, "channel_name": "Main"},
                      {"entry_id": "0_panel", "name": "Panel \u00e9t\u00e9"}]},
        {"name": "legacy-webinar", "partner_id": PARTNER, "virtual_event_id": LEGACY, "marketo_instance": "main",
         "program_id": 1002, "outputs": {"custom_objects": False, "legacy_activities_only": True}},
        {"name": "custom-channel", "partner_id": PARTNER, "virtual_event_id": OVERRIDES,
         "marketo_instance": "main", "program_id": 1003,
         "status_overrides": {"participatedPostEvent": "Attended", "invitedPendingRegistration": "Created"}},
        {"name": "objects-only", "partner_id": PARTNER, "virtual_event_id": OBJECTS_ONLY,
         "marketo_instance": "main", "program_id": 1004, "outputs": {"custom_activities": False}},
        {"name": "no-program-status", "partner_id": PARTNER, "virtual_event_id": NO_STATUS,
         "marketo_instance": "main", "program_id": 1005, "outputs": {"program_status": False}},
        {"name": "emea-days", "partner_id": PARTNER, "virtual_event_id": OTHER_INSTANCE,
         "marketo_instance": "emea", "program_id": 2001},
    ],
}


def tenants_config() -> TenantsConfig:
    return parse_tenants(TENANTS, "golden tenants", check_secrets=False)


def _iso(t: datetime) -> str:
    return t.isoformat()


def status(status: str, user: str = "u1", email: Any = "ann@example.com", minutes: int = 0,
           event: int = MAIN, **extra: Any) -> dict[str, Any]:
    t = T0 + timedelta(minutes=minutes)
    return {"partner_id": PARTNER, "virtual_event_id": event, "user_id": user, "email": email, "source": "pull",
            "source_time": _iso(t), "ingested_at": _iso(t), "status": status, "status_time": _iso(t), **extra}


def engagement(user: str = "u1", email: Any = "ann@example.com", entry: str = "0_keynote", event: int = MAIN,
               final: bool = False, minutes: int = 0, **metrics: Any) -> dict[str, Any]:
    t = T0 + timedelta(minutes=minutes)
    return {"partner_id": PARTNER, "virtual_event_id": event, "user_id": user, "email": email, "source": "file",
            "source_time": _iso(t), "ingested_at": _iso(t), "entry_id": entry, "is_final": final, **metrics}


def poll(poll_id: str, answer: str = "yes", question: str = "Q?", user: str = "u1",
         email: Any = "ann@example.com", entry: str = "0_keynote", event: int = MAIN, **extra: Any) -> dict[str, Any]:
    return {"partner_id": PARTNER, "virtual_event_id": event, "user_id": user, "email": email, "source": "webhook",
            "source_time": _iso(T0), "ingested_at": _iso(T0), "entry_id": entry, "poll_id": poll_id,
            "question": question, "answer": answer, **extra}


FULL_METRICS: dict[str, Any] = dict(
    entry_name="Keynote live", channel_id=9, channel_name="Hall", plays=3, vod_minutes_viewed=2,
    live_minutes_viewed=41.5, total_vod_completion_rate=0.5, no_live_engagement_rate=0.1,
    low_live_engagement_rate=0.2, fair_live_engagement_rate=0.3, good_live_engagement_rate=0.25,
    high_live_engagement_rate=0.15, clap_clicked_count=1, heart_clicked_count=2, think_clicked_count=0,
    wow_clicked_count=4, smile_clicked_count=5, answered_polls=2, messages_sent_group=7, qna_threads=1,
    combined_live_engaged_users_play_time_ratio=0.8, add_to_calendar=1, mic_on=3, cam_on=0.5,
    total_reactions_activity=12, raise_hand=2,
)
PERCENT_METRICS: dict[str, Any] = dict(
    plays=1, total_vod_completion_rate=250.0, no_live_engagement_rate=0.5, low_live_engagement_rate=12.5,
    good_live_engagement_rate=33.333333333333336, high_live_engagement_rate=0,
    combined_live_engaged_users_play_time_ratio=87.25, live_minutes_viewed=1e-7, vod_minutes_viewed=123456789.125,
)


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def inputs() -> list[tuple[TopicSpec, bytes]]:
    """The records, in the order transform reads them: statuses, engagement, polls, bad records."""
    s, e, p = ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES
    long_answer = "\u00e4" * 1600
    items: list[tuple[TopicSpec, bytes]] = [
        # --- statuses: forward, regression, repeat, same step, overrides, labels, names, instances
        (s, _json(status("registered", first_name="Ann", last_name="Lee", email=" Ann@Example.COM "))),
        (s, _json(status("invited", minutes=1))),  # regression
        (s, _json(status("registered", minutes=2))),  # repeat
        (s, _json(status("confirmed", minutes=3, reg_origin="sso"))),
        (s, _json(status("autoConfirmed", minutes=4, last_login_type="sso"))),  # same step, other name
        (s, _json(status("attended", minutes=5, first_name="Ann-Marie \"Nan\" O'Neil", last_name=""))),
        (s, _json(status("participatedPostEvent", user="u2", email="mailto:Bob@X.io", event=OVERRIDES,
                         first_name="Bj\u00f6rn", last_name="\u5f20\u4f1f \U0001f600"))),
        (s, _json(status("invitedPendingRegistration", user="u3", email="cy@x.io", event=OVERRIDES))),
        (s, _json(status("unregistered", user="u4", email="dee@x.io", event=NO_STATUS,
                         previous_status="registered", app_guid="  guid-1  ", source_ref="report 7, page 2"))),
        (s, _json(status("blocked", user="u5", email="eve@emea.example", event=OTHER_INSTANCE, first_name="Eve",
                         status_time=datetime(2026, 11, 27, 10, 0, 0, 500000, tzinfo=BERLIN).isoformat()))),
        (s, _json(status("created", user="u6", email="fay@x.io", first_attended_time="2026-11-27T08:00:00"))),
        (s, _json(status("participated", user="u7", email="gus@x.io", first_name="Gus\\Back\tslash\u0001"))),
        # --- engagement: None fields, percentages, clamping, channel sources, legacy, objects-only, ledger
        (e, _json(engagement(plays=1, good_live_engagement_rate=40.0))),
        (e, _json(engagement(final=True, minutes=30, **FULL_METRICS))),
        (e, _json(engagement(final=True, minutes=31, plays=9))),  # ledger hit, object still upserted
        (e, _json(engagement(user="u2", email="bob@x.io", entry="0_panel", final=True, **PERCENT_METRICS))),
        (e, _json(engagement(user="u3", email="cy@x.io", entry="0_unknown", mic_on=-0.0, cam_on=0.1 + 0.2,
                             plays=3.0, qna_threads="4", total_vod_completion_rate=1.0))),
        (e, _json(engagement(user="u4", email="dee@x.io", event=LEGACY, final=True, channel_id=5,
                             channel_name="ignored", **{k: v for k, v in FULL_METRICS.items()
                                                        if k not in ("channel_id", "channel_name")}))),
        (e, _json(engagement(user="u4", email="dee@x.io", event=LEGACY, final=False, plays=2))),
        (e, _json(engagement(user="u5", email="eve@x.io", event=OBJECTS_ONLY, final=True, entry="1_x",
                             entry_name="  Spaced name  ", channel_id=0, channel_name="", plays=0,
                             high_live_engagement_rate=100.0, raise_hand=2**40))),
        (e, _json(engagement(user="u6", email="fay@x.io", event=OTHER_INSTANCE, final=True,
                             good_live_engagement_rate=0.999999, combined_live_engaged_users_play_time_ratio=1.5))),
        (e, _json(engagement(user="u10", email="jo@x.io", final=True, no_live_engagement_rate=-0.0, cam_on=-0.0,
                             high_live_engagement_rate=1e-320, vod_minutes_viewed=1e16, plays=0,
                             live_minutes_viewed=12345678901234567890.5))),
        (e, _json(engagement(user="u7", email="gus@x.io", entry="0_keynote", minutes=45,
                             source_time=datetime(2026, 11, 27, 9, 45, tzinfo=BERLIN).isoformat()))),
        # --- polls: slots, repeats, changed answers, truncation, unicode, a session's 11th poll
        (p, _json(poll("p1", poll_type="crowd vote"))),
        (p, _json(poll("p1", poll_type="crowd vote"))),  # repeat
        (p, _json(poll("p2", answer="\u00bfs\u00ed? \"quoted\"", question="Q2 \u2014 \U0001f600",
                       answered_at=datetime(2026, 11, 27, 9, 5, tzinfo=BERLIN).isoformat()))),
        (p, _json(poll("p1", answer="no", poll_type="crowd vote"))),  # changed answer
        (p, _json(poll("p3", answer=long_answer, question="q" * 3700, user="u2", email="bob@x.io"))),
        (p, _json(poll("p1", user="u3", email="cy@x.io", event=LEGACY))),  # legacy: nothing
        (p, _json(poll("p1", user="u5", email="eve@x.io", event=OBJECTS_ONLY, entry="1_x"))),
        *[(p, _json(poll(f"q{i}", answer=f"a{i}", user="u8", email="hal@x.io", entry="0_full")))
          for i in range(1, 12)],  # the 11th is dead-lettered
        # --- bad records
        (s, b"{not json"),
        (s, b"\xff\xfe not utf-8"),
        (s, _json({"partner_id": "x"})),
        (s, _json(status("registered", user="u9", email=None))),
        (s, _json(status("registered", user="u9", email="n/a"))),
        (e, _json(engagement(user="u9", email="   "))),
        (p, _json(poll("p1", user="u9", email="ivy@x.io", event=999))),
        (e, _json({**engagement(user="u9", email="ivy@x.io"), "plays": -1, "mic_on": "NaN", "extra": 1})),
        (s, _json({**status("registered", user="u9", email="ivy@x.io"), "status_time": "2026-11-27T09:00:00"})),
    ]
    return items


def sources(items: list[tuple[TopicSpec, bytes]]) -> Iterator[SourceRef]:
    for offset, (spec, _) in enumerate(items):
        yield SourceRef(topic=spec.name, partition=offset % 3, offset=offset,
                        key=None if offset % 5 == 4 else f"{PARTNER}:{offset}:k")


def _line(topic: str, key: bytes | None, value: bytes | None) -> str:
    k = "<none>" if key is None else key.decode()
    v = "<tombstone>" if value is None else value.decode()
    return f"{topic}\t{k}\t{v}"


def golden_lines() -> list[str]:
    """Every output of the pure path, in order: operations, dead letters, each batch's state records
    and, last, the metric samples."""
    tenants = tenants_config()
    metrics = TransformMetrics()
    tables = Tables()
    items = inputs()
    lines: list[str] = []
    for start in range(0, len(items), BATCH):
        staged = tables.stage()
        transformer = Transformer(tenants, staged.transform_state(), clock=lambda: NOW)
        batch = list(zip(items[start:start + BATCH], list(sources(items))[start:start + BATCH], strict=True))
        for (spec, raw), source in batch:
            key = (source.key or "").encode()
            routed = route(spec, raw, source, tenants, NOW)
            metrics.routed(spec.name, routed)
            if routed.dead_letter is not None:
                lines.append(_line("dlq", key, encode(routed.dead_letter)))
                continue
            assert routed.routed is not None
            result = transformer.apply(routed.routed)
            metrics.stepped(result)
            lines += [_line("ops", op.munchkin_id.encode(), encode(op)) for op in result.ops]
            lines += [_line("dlq", key, encode(dl)) for dl in result.dead_letters]
        lines += [_line("state", k, v) for k, v in staged.records()]
        staged.commit()
    lines += forced_scale_lines(tenants, items)
    lines += metric_lines(metrics)
    return lines


def forced_scale_lines(tenants: TenantsConfig, items: list[tuple[TopicSpec, bytes]]) -> list[str]:
    """The engagement records again, into fresh state, with each forced rate scale and other dedupe fields."""
    lines: list[str] = []
    for scale in ("fraction", "percent"):
        transformer = Transformer(tenants, TransformState.in_memory(), rate_scale=scale,
                                  engagement_dedupe_fields=("entry_id", "email"), clock=lambda: NOW)
        for (spec, raw), source in zip(items, sources(items), strict=True):
            routed = route(spec, raw, source, tenants, NOW)
            if spec is SESSION_ENGAGEMENT and routed.routed is not None:
                lines += [_line(f"ops-{scale}", op.munchkin_id.encode(), encode(op))
                          for op in transformer.apply(routed.routed).ops]
    return lines


def consumer_records(items: list[tuple[TopicSpec, bytes]]) -> list[ConsumerRecord[bytes, bytes]]:
    """The inputs as the worker's consumer hands them over (positions as in sources())."""
    return [ConsumerRecord(spec.name, source.partition or 0, source.offset or 0, 0, 0,
                           source.key.encode() if source.key else None, raw, None, 0, len(raw), ())
            for (spec, raw), source in zip(items, sources(items), strict=True)]


def worker() -> TransformWorker:
    """A worker that is never started: its pure batch path needs no broker."""
    return TransformWorker(TransformSettings(topic_prefix=""), tenants_config(), clock=lambda: NOW)


def app_lines(w: TransformWorker, records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    """What the worker sends for `records`, in batches of BATCH, as golden lines (then its metrics)."""
    label = {w.ops_topic: "ops", w.dlq_topic: "dlq"}
    lines: list[str] = []
    for start in range(0, len(records), BATCH):
        staged = w.tables.stage()
        # decisions (transform.decisions.v1) carry a keyed email hash: tests/transform/test_decisions.py pins them
        lines += [_line(label[t], k, v) for t, k, v in w.transform_batch(staged, records[start:start + BATCH])
                  if t != w.decisions_topic]
        lines += [_line("state", k, v) for k, v in staged.records()]
        staged.commit()
    return lines + metric_lines(w.metrics)


def metric_lines(metrics: TransformMetrics) -> list[str]:
    """Transform's own counters (kmsync_transform_*): not the process's python_gc_* the registry also serves."""
    return sorted(
        f"metric\t{s.name}{sorted(s.labels.items())}\t{s.value}"
        for family in metrics.registry.collect() for s in family.samples
        if s.name.endswith("_total") and s.name.startswith("kmsync_")
    )


if __name__ == "__main__":
    print("\n".join(golden_lines()))
