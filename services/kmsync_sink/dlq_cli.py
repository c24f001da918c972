"""`kmsync dlq replay --topic T [--filter field=value ...] [--dry-run]`: after a fix, put dead-lettered
records back on the topic they came from (same key, so same partition and instance owner).

Replays are safe to repeat: leads, statuses and custom objects are upserts, and the sink's activity
ledger never writes a custom activity twice. Each payload is validated against its source topic's
contract first; one that still does not match is counted and left in the DLQ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient

from kmsync_config.settings import load_settings
from kmsync_config.tenants import ConfigError
from kmsync_contracts import ContractError, DeadLetter, decode
from kmsync_contracts.codecs import decode_model
from kmsync_contracts.topics import TOPICS_BY_NAME
from kmsync_kafka.clients import reliable_producer
from kmsync_kafka.reading import read_to_end
from kmsync_sink.settings import SinkSettings

#: Fields --filter understands: dead letter fields, and fields of the original operation.
LETTER_FIELDS = ("reason_code", "stage", "source_topic", "source_key")
PAYLOAD_FIELDS = ("op_id", "munchkin_id", "kind", "email", "partner_id", "virtual_event_id")


@dataclass
class ReplayReport:
    read: int = 0
    matched: int = 0
    replayed: int = 0
    #: What a --dry-run would have replayed.
    replayable: int = 0
    skipped: Counter[str] | None = None

    def skip(self, why: str) -> None:
        if self.skipped is None:
            self.skipped = Counter()
        self.skipped[why] += 1


def parse_filters(items: list[str]) -> dict[str, set[str]]:
    filters: dict[str, set[str]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise ValueError(f"--filter {item!r}: write field=value")
        if name not in LETTER_FIELDS + PAYLOAD_FIELDS:
            raise ValueError(f"--filter {item!r}: unknown field {name!r}; use one of "
                             f"{', '.join(LETTER_FIELDS + PAYLOAD_FIELDS)}")
        filters.setdefault(name, set()).add(value)
    return filters


def matches(letter: DeadLetter, filters: dict[str, set[str]]) -> bool:
    payload = letter.payload if isinstance(letter.payload, dict) else {}
    for name, wanted in filters.items():
        value = getattr(letter, name) if name in LETTER_FIELDS else payload.get(name)
        if value is None or str(value) not in wanted:
            return False
    return True


def _source_spec(source_topic: str, prefix: str) -> str | None:
    name = source_topic[len(prefix):] if prefix and source_topic.startswith(prefix) else source_topic
    return name if name in TOPICS_BY_NAME else None


#: A bound on reading the whole DLQ topic (it is read to its end as it is when the replay starts).
READ_WITHIN_SECONDS = 3600.0


async def replay(bootstrap: str, dlq_topic: str, prefix: str, filters: dict[str, set[str]],
                 dry_run: bool = False) -> ReplayReport:
    report = ReplayReport()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if dlq_topic not in set(await admin.list_topics()):
            raise ValueError(f"topic {dlq_topic} does not exist")
    finally:
        await admin.close()
    letters = await read_to_end(bootstrap, dlq_topic, within=READ_WITHIN_SECONDS)
    producer = reliable_producer(bootstrap)
    try:
        await producer.start()
        pending: list[asyncio.Future[object]] = []
        for m in letters:
            report.read += 1
            found = _replayable(m.value or b"", filters, prefix, report)
            if found is None:
                continue
            if dry_run:
                report.replayable += 1
                continue
            topic, value, key = found
            pending.append(await producer.send(topic, value, key=key))
            report.replayed += 1
        if pending:
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return report


def _replayable(raw: bytes, filters: dict[str, set[str]], prefix: str,
                report: ReplayReport) -> tuple[str, bytes, bytes | None] | None:
    """(source topic, payload, key) of a dead letter the filters match and its source contract
    accepts; None (counted in ``report`` when it matched) otherwise."""
    try:
        letter = decode_model(DeadLetter, raw)
    except ContractError:
        report.skip("not a dead letter")
        return None
    if not matches(letter, filters):
        return None
    report.matched += 1
    if letter.source_topic is None:
        report.skip("no source topic")
        return None
    spec_name = _source_spec(letter.source_topic, prefix)
    if spec_name is None:
        report.skip("source topic not in the catalogue")
        return None
    if not isinstance(letter.payload, dict):
        report.skip("payload did not parse (fix upstream)")
        return None
    value = json.dumps(letter.payload, separators=(",", ":")).encode()
    try:
        decode(TOPICS_BY_NAME[spec_name], value)
    except ContractError:
        report.skip("payload does not match the source contract")
        return None
    key = letter.source_key.encode() if letter.source_key else None
    return letter.source_topic, value, key


def main(argv: list[str]) -> int:
    # A one-shot tool: Kafka client chatter (connection retries) would bury the one-line answer.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(prog="kmsync dlq")
    sub = parser.add_subparsers(dest="action", required=True)
    rp = sub.add_parser("replay", help="re-inject dead-lettered records into their source topic")
    rp.add_argument("--topic", required=True, help="the DLQ topic, e.g. marketo.dlq.v1 (prefix added)")
    rp.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                    help="only records whose field equals value (repeat: AND across fields, OR within one); "
                         f"fields: {', '.join(LETTER_FIELDS + PAYLOAD_FIELDS)}")
    rp.add_argument("--dry-run", action="store_true", help="count what would be replayed")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(SinkSettings)
        filters = parse_filters(args.filter)
    except (ConfigError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    prefix = settings.topic_prefix
    topic = args.topic if args.topic.startswith(prefix) else prefix + args.topic
    try:
        report = asyncio.run(replay(settings.kafka_bootstrap, topic, prefix, filters, args.dry_run))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    done = f"would replay {report.replayable}" if args.dry_run else f"replayed {report.replayed}"
    print(f"{topic}: read {report.read}, matched {report.matched}, {done}")
    for why, n in sorted((report.skipped or Counter()).items()):
        print(f"  skipped {n}: {why}")
    return 0
