"""Ingest numbers a session's polls from the whole pollsActivity pull (docs/reference/kaltura-api.md §11,
docs/design/granular-statuses.md §5) and stamps each PollResponse with its poll's position."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from kaltura_sandbox.testing import running_sandbox
from kmsync_contracts import PollResponse
from kmsync_contracts.topics import POLL_RESPONSES
from kmsync_ingest.kaltura_source import KalturaPullSource, client_for
from kmsync_ingest.poll_order import poll_positions
from kmsync_ingest.source import SessionWindow
from kmsync_testing.ingest import running_ingest, settings_for, tenants_for, upload_headers
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic

T = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T + timedelta(minutes=minutes)


def test_positions_by_first_answer_row_or_id_per_session() -> None:
    rows = [("s1", "zz", at(9)), ("s1", "aa", at(5)), ("s1", "mm", at(1)), ("s1", "zz", at(0)),
            ("s2", "aa", at(3)), ("s1", "bb", at(1))]
    assert poll_positions(rows) == {("s1", "zz"): 1, ("s1", "bb"): 2, ("s1", "mm"): 3, ("s1", "aa"): 4,
                                    ("s2", "aa"): 1}  # earliest answer; a tie (bb, mm at 1) by poll id
    assert poll_positions(rows, "report_row") == {("s1", "zz"): 1, ("s1", "aa"): 2, ("s1", "mm"): 3,
                                                  ("s1", "bb"): 4, ("s2", "aa"): 1}
    assert poll_positions(rows, "poll_id") == {("s1", "aa"): 1, ("s1", "bb"): 2, ("s1", "mm"): 3,
                                               ("s1", "zz"): 4, ("s2", "aa"): 1}
    assert poll_positions(list(reversed(rows))) == poll_positions(rows)  # first_answer ignores row order


async def test_the_sandbox_sessions_polls_get_kalturas_order_not_the_reports(tmp_path: Path) -> None:
    """The sandbox launches a session's polls in order and lists the report's rows by user and poll id:
    the positions ingest stamps are the ground truth's poll order (also past 10), which neither the
    row order nor the order of arrival gives."""
    async with running_sandbox({"registrants": 120, "max_polls_per_session": 12}, seed=3) as sb:
        sb.advance_to_end()
        truth = {(p["entry_id"], p["poll_id"]): p["index"] for p in sb.truth()["polls"]}
        tenants = tenants_for(sb, tmp_path)
        settings = settings_for("127.0.0.1:1", "", sb)
        event = tenants.events[0]
        source = KalturaPullSource(client_for(event.partner_id, tenants.kaltura_partners[event.partner_id], settings),
                                   settings)
        try:
            entry = sb.session_entry_ids[0]
            items = await source.poll_answers(event, SessionWindow(entry, None, None, None))
        finally:
            await source.close()
    records = [i.record for i in items if i.record is not None]
    stamped = {(r.entry_id, r.poll_id): r.poll_position for r in records}
    assert len(stamped) == 12 and max(p or 0 for p in stamped.values()) == 12  # past the 10 slots too
    assert stamped == {k: truth[k] for k in stamped}
    by_arrival: dict[tuple[str, str], int] = {}
    for r in records:
        by_arrival.setdefault((r.entry_id, r.poll_id), len(by_arrival) + 1)
    assert by_arrival != stamped, "the report's row order must differ from the polls' order"
    contents = defaultdict(set)
    for i in items:
        if i.record is not None:
            contents[i.record.poll_id].add(i.content["poll_position"])  # a moved poll is new content
    assert all(len(v) == 1 for v in contents.values())


async def test_an_uploaded_poll_answers_file_gets_the_same_positions(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path,
) -> None:
    """A poll answers file is numbered over the whole file, as a pull is."""
    async with running_sandbox({"registrants": 120, "max_polls_per_session": 12}, seed=3) as sb:
        sb.advance_to_end()
        truth = {(p["entry_id"], p["poll_id"]): p["index"] for p in sb.truth()["polls"]}
        entry = sb.session_entry_ids[0]
        async with httpx.AsyncClient() as http:
            polls = await http.get(f"{sb.base_url}/_sandbox/exports/polls/{entry}.csv")
            settings = settings_for(kafka_broker.bootstrap, topic_prefix, None)
            async with running_ingest(settings, tenants_for(sb, tmp_path), None) as ingest:
                answer = await http.post(f"{ingest.base_url}/ingest/kaltura/reports", content=polls.content,
                                         headers=upload_headers())
                assert answer.status_code == 200, answer.text
    records = [v for _, v in await read_topic(kafka_broker.bootstrap, POLL_RESPONSES, topic_prefix)]
    stamped = {(r.entry_id, r.poll_id): r.poll_position for r in records if isinstance(r, PollResponse)}
    assert len(stamped) == 12 and stamped == {k: truth[k] for k in stamped}
