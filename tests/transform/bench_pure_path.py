"""Micro-benchmark of transform's pure path (not a test): rows/s of CPU time through the worker's
batch path (decode + validate, route, transform, encode, metrics, state records), no Kafka.

    .venv/bin/python tests/transform/bench_pure_path.py [--rows 20000] [--rounds 5]

Workloads: `backfill` is engagement snapshots of a custom-objects-only event (the profiled case: one
custom object upsert per row); `mixed` is golden_inputs.py's varied set (statuses, engagement, polls,
bad records), repeated on fresh tables.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta

from aiokafka import ConsumerRecord
from golden_inputs import (  # type: ignore[import-not-found]
    OBJECTS_ONLY,
    PARTNER,
    T0,
    consumer_records,
    inputs,
    worker,
)

from kmsync_contracts import SessionEngagement, encode
from kmsync_contracts.topics import SESSION_ENGAGEMENT
from kmsync_transform.app import TransformWorker
from kmsync_transform.state import Tables

BATCH = 500  # the default KMSYNC_TRANSFORM_BATCH_MAX_RECORDS


def backfill_records(rows: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Like the bench's report-4021 rows: one session, one row per attendee, a dozen metrics each."""
    out = []
    for i in range(rows):
        t = T0 + timedelta(seconds=i)
        snap = SessionEngagement(
            partner_id=PARTNER, virtual_event_id=OBJECTS_ONLY, user_id=f"user{i}", email=f"User{i}@Bench.example",
            source="file", source_ref=f"report-4021.csv:{i + 2}", source_time=t, ingested_at=t,
            entry_id="1_backfill", is_final=True, plays=i % 4, live_minutes_viewed=i % 30,
            vod_minutes_viewed=(i % 100) / 100, total_vod_completion_rate=(i % 100) / 100,
            good_live_engagement_rate=(i % 7) / 10, high_live_engagement_rate=(i % 3) / 10,
            clap_clicked_count=i % 5, heart_clicked_count=i % 6, think_clicked_count=i % 7,
            wow_clicked_count=i % 8, smile_clicked_count=i % 9, answered_polls=i % 4, messages_sent_group=i % 11,
            qna_threads=i % 3,
        )
        raw = encode(snap)
        key = snap.partition_key().encode()
        out.append(ConsumerRecord(SESSION_ENGAGEMENT.name, i % 6, i, 0, 0, key, raw, None, len(key), len(raw), ()))
    return out


def run_batches(w: TransformWorker, records: list[ConsumerRecord[bytes, bytes]]) -> int:
    """What the app does between getmany and the sends, batch by batch; returns the outputs' count."""
    sent = 0
    for start in range(0, len(records), BATCH):
        staged = w.tables.stage()
        sent += len(w.transform_batch(staged, records[start:start + BATCH]))
        sent += len(staged.records())
        staged.commit()
    return sent


def measure(name: str, rounds: int, one_round: Callable[[], int], rows: int) -> None:
    rates = []
    for _ in range(rounds):
        started = time.process_time()
        one_round()
        rates.append(rows / (time.process_time() - started))
    print(f"{name:9s} {rows:7,d} rows/round  median {statistics.median(rates):8,.0f} rows/s  "
          f"best {max(rates):8,.0f} rows/s  ({1e3 / statistics.median(rates):.3f} ms CPU per row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    backfill = backfill_records(args.rows)
    measure("backfill", args.rounds, lambda: run_batches(worker(), backfill), len(backfill))
    mixed = consumer_records(inputs())
    repeat = max(1, args.rows // len(mixed))

    def mixed_round() -> int:
        w, sent = worker(), 0
        for _ in range(repeat):
            w.tables = Tables()  # fresh state, so every repeat does the same work
            sent += run_batches(w, mixed)
        return sent

    measure("mixed", args.rounds, mixed_round, repeat * len(mixed))


if __name__ == "__main__":
    main()
