"""`kmsync run`: the whole pipeline on this machine against the sandboxes.

Starts a local Kafka broker and creates the catalogue's topics. The sandboxes and services join
the run as they land (issue 8 builds the full scenario and reconciliation).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from kmsync_contracts.topics import ALL_TOPICS
from kmsync_kafka import BrokerError, ensure_topics, start_broker


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmsync run", description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path(".run"))
    args = parser.parse_args(argv)
    try:
        broker = start_broker(args.work_dir.resolve() / "kafka")
    except BrokerError as exc:
        print(f"kmsync run: {exc}")
        return 1
    try:
        names = asyncio.run(ensure_topics(broker.bootstrap, ALL_TOPICS))
        print(f"Kafka {broker.bootstrap} is up with {len(names)} topics: {', '.join(names)}")
        print("The end-to-end scenario (sandboxes, ingest, transform, sink, reconciliation) is not wired yet.")
    finally:
        broker.stop()
    print("stopped everything this run started")
    return 0
