"""`kmsync kafka start|fetch`: a local broker in the foreground, or just the jars."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from kmsync_testing.kafka_broker import BrokerError, ensure_jars, start_broker


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmsync kafka", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start", help="start a single-node KRaft broker; Ctrl-C stops it")
    start.add_argument("--port", type=int, default=9092,
                       help="the client (PLAINTEXT) listener's port on 127.0.0.1 (default 9092)")
    start.add_argument("--controller-port", type=int, default=0,
                       help="the KRaft controller listener's port; 0 picks a free port (default 0)")
    start.add_argument("--data-dir", type=Path, default=Path(".run/kafka"),
                       help="the broker's log directory, formatted on first start (default .run/kafka)")
    start.add_argument("--partitions", type=int, default=1,
                       help="partitions of an auto-created topic (default 1)")
    sub.add_parser("fetch", help="only resolve the broker jars from Maven Central")
    args = parser.parse_args(argv)
    try:
        if args.action == "fetch":
            print(ensure_jars())
            return 0
        broker = start_broker(args.data_dir.resolve(), port=args.port,
                              controller_port=args.controller_port or None, partitions=args.partitions)
    except BrokerError as exc:
        print(f"kmsync kafka: {exc}", file=sys.stderr)
        return 1
    print(f"Kafka {broker.bootstrap} ready (data in {broker.work_dir}); Ctrl-C stops it", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0) and broker.is_running():
            pass
    except KeyboardInterrupt:
        pass
    broker.stop()
    return 0
