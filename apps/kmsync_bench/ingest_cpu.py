"""A focused micro-benchmark of ingest's file path: CPU per 10,000 rows of report 4021 CSV through
``kmsync_ingest.files.ingest_file`` and a real ``Publisher`` into a real broker (no HTTP).

``python -m kmsync_bench.ingest_cpu [--rows 20000] [--repeat 3] [--profile out.pstats]``: starts its
own broker (kmsync_testing.kafka_broker), loads the same CSV ``--repeat`` times (one warm-up
first) and prints this process's CPU seconds (time.process_time: every thread) per 10,000 rows of
each load and, with ``--profile``, writes cProfile statistics of the measured loads.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import tempfile
import time
from pathlib import Path

from kmsync_bench.config import CAPACITY_INSTANCE
from kmsync_bench.cpu import per_10k, services_collections
from kmsync_bench.workload import PARTNER_ID, PROGRAM_ID, engagement_csv
from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_config import TenantsConfig, parse_tenants
from kmsync_contracts.topics import ALL_TOPICS
from kmsync_ingest.files import FileParams, ingest_file
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.publisher import Publisher
from kmsync_kafka import ensure_topics
from kmsync_testing.kafka_broker import start_broker

EVENT_ID = 12


def tenants() -> TenantsConfig:
    dead = "http://127.0.0.1:9"
    return parse_tenants({
        "marketo_instances": {"capacity": {"munchkin_id": CAPACITY_INSTANCE, "endpoint": dead,
                                           "client_id": "bench",
                                           "client_secret": {"env": "KMSYNC_BENCH_UNUSED"}}},
        "kaltura_partners": {PARTNER_ID: {"service_url": dead, "user_profile_url": dead,
                                          "admin_secret": {"env": "KMSYNC_BENCH_UNUSED"}}},
        "events": [{"name": "bench-capacity", "partner_id": PARTNER_ID, "virtual_event_id": EVENT_ID,
                    "marketo_instance": "capacity", "program_id": PROGRAM_ID}],
    }, "ingest_cpu", check_secrets=False)


async def load(bootstrap: str, rows: int, repeat: int, profile: Path | None) -> list[float]:
    await ensure_topics(bootstrap, ALL_TOPICS)
    publisher = Publisher(bootstrap, "", IngestMetrics())
    await publisher.start()
    config = tenants()
    csv = engagement_csv(rows, "cap")
    params = FileParams(partner_id=PARTNER_ID, virtual_event_id=EVENT_ID, entry_id="1_capacity", report_id=4021,
                        exported_at=SYSTEM_CLOCK.now())
    profiler = cProfile.Profile() if profile is not None else None
    out: list[float] = []
    try:
        await ingest_file(csv, params, config, publisher, publisher.metrics)  # warm-up: connections, caches
        for _ in range(repeat):
            if profiler is not None:
                profiler.enable()
            before = time.process_time()
            report = await ingest_file(csv, params, config, publisher, publisher.metrics)
            spent = time.process_time() - before
            if profiler is not None:
                profiler.disable()
            if report.produced != rows:
                raise RuntimeError(f"{report.produced} of {rows} rows produced: {report.bad_rows[:3]}")
            out.append(per_10k(spent, rows))
    finally:
        await publisher.stop()
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.ingest_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kmsync-ingest-cpu-") as tmp:
        broker = start_broker(Path(tmp) / "kafka")
        try:
            with services_collections():
                values = asyncio.run(load(broker.bootstrap, args.rows, args.repeat, args.profile))
        finally:
            broker.stop()
    print("ingest CPU s per 10,000 rows: " + ", ".join(f"{v:.3f}" for v in values)
          + f" (median {sorted(values)[len(values) // 2]:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
