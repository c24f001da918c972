"""Create every topic of the catalogue (kmsync_contracts.topics) on a Kafka cluster; idempotent.

Run once per deployment before the services start (docker-compose `topics`, the Kubernetes
`kmsync-topics` Job). Reads KMSYNC_KAFKA_BOOTSTRAP and KMSYNC_TOPIC_PREFIX like every service, so
topic names and partition counts are never spelled outside the catalogue.

    python create_topics.py [--replication-factor N] [--timeout SECONDS]

The replication factor defaults to $TOPIC_REPLICATION_FACTOR (1 when unset): the Kubernetes
overlays set it in the kmsync-env ConfigMap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from kmsync_config import CommonSettings, ConfigError, load_settings
from kmsync_contracts.topics import ALL_TOPICS, TopicSpec


def new_topics(specs: tuple[TopicSpec, ...], prefix: str, replication_factor: int,
               existing: set[str]) -> list[NewTopic]:
    """The topics still missing, with the catalogue's partitions and configs."""
    return [
        NewTopic(f"{prefix}{s.name}", s.partitions, replication_factor, topic_configs=s.config())
        for s in specs
        if f"{prefix}{s.name}" not in existing
    ]


async def create(bootstrap: str, prefix: str, replication_factor: int) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        missing = new_topics(ALL_TOPICS, prefix, replication_factor, set(await admin.list_topics()))
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another run created them in between
        return [t.name for t in missing]
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replication-factor", type=int,
                        default=int(os.environ.get("TOPIC_REPLICATION_FACTOR", "1")))
    parser.add_argument("--timeout", type=float, default=120.0, help="keep retrying an unreachable broker")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(CommonSettings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            created = asyncio.run(create(settings.kafka_bootstrap, settings.topic_prefix, args.replication_factor))
            break
        except KafkaError as exc:
            if time.monotonic() >= deadline:
                print(f"create_topics: Kafka at {settings.kafka_bootstrap} not usable: {exc!r}", file=sys.stderr)
                return 1
            time.sleep(2.0)  # a broker that is still starting; retried until the deadline
    total = len(ALL_TOPICS)
    print(f"create_topics: {len(created)} created, {total - len(created)} already present "
          f"(prefix {settings.topic_prefix!r}, replication factor {args.replication_factor})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
