"""A full `kmsync run` (the Stack of apps/kmsync_cli, a small event) leaves no secret and no raw
email in any log file, and no secret in any topic on the broker (the catalogue's, transform's own, Kafka's);
raw emails appear only in the topics that carry them for Marketo (docs/configuration.md, "Where emails are");
every other topic has none."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from kmsync_cli.demo import run_until_reconciled
from kmsync_cli.stack import Stack, StackOptions, http_json
from kmsync_contracts.topics import ALL_TOPICS
from kmsync_kafka import topic_name
from kmsync_kafka.reading import read_to_end

#: Topics whose records name people by email because Marketo identifies leads by email (and the
#: dead-letter topics, which keep the record they could not handle, and transform's decisions, which
#: name the person as the record did). Every other topic has none.
EMAIL_TOPICS = {
    "kaltura.attendee-status.v1", "kaltura.session-engagement.v1", "kaltura.poll-responses.v1",
    "ingest.dlq.v1", "transform.state.v1", "transform.dlq.v1", "transform.decisions.v1", "marketo.ops.v1",
    "marketo.ops.backfill.v1", "marketo.dlq.v1",
}
#: Transform's own topics (services/kmsync_transform/internal_topics.py): its stores' changelogs (a member's key
#: names the person by email) and the polls' repartition topic (the routed poll response).
TRANSFORM_INTERNAL = ("changelog__", "repartition__")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(StackOptions(work_dir=tmp_path / "run", registrants=60, sessions=1, speed=6000, seed=23))
    try:
        s.start()
        yield s
    finally:
        s.stop()


async def broker_topics(bootstrap: str) -> set[str]:
    """Every topic the broker holds, Kafka's internal ones included."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def topic_bytes(bootstrap: str, topic: str) -> bytes:
    """Every byte of a topic's keys and values, aborted transactions' records included."""
    records = await read_to_end(bootstrap, topic, isolation="read_uncommitted")
    return b"".join((m.key or b"") + b"\n" + (m.value or b"") + b"\n" for m in records)


def test_no_secret_or_raw_email_in_logs_and_emails_only_where_marketo_needs_them(stack: Stack) -> None:
    lines: list[str] = []
    result = run_until_reconciled(stack, timeout=420, say=lines.append)
    assert result is not None and result.clean, "\n".join(lines[-5:])
    secrets = {stack.credentials["admin_secret"]}
    default = next(i for i in http_json(f"{stack.marketo_url}/_sandbox/instances") if i["default"])
    secrets |= {c["clientSecret"] for c in default["clients"]}
    truth = http_json(f"{stack.kaltura_url}/_sandbox/truth")
    emails = {a["email"].lower() for a in truth["attendees"] if a.get("email")}
    assert len(emails) >= 50 and all(len(s) >= 8 for s in secrets)

    work = stack.options.work_dir
    logs = [p for p in work.rglob("*.log") if "kafka" not in p.parts]
    assert {p.stem for p in logs} >= {"ingest", "transform", "sink"}
    for log in logs:
        text = log.read_text(errors="replace").lower()
        assert not [s for s in secrets if s.lower() in text], f"a secret in {log.name}"
        leaked = [e for e in emails if e in text]
        assert not leaked, f"{len(leaked)} raw emails in {log.name}"

    assert stack.broker is not None
    prefix = stack.options.topic_prefix
    catalogue = {topic_name(spec, prefix): spec.name for spec in ALL_TOPICS}
    every_topic = asyncio.run(broker_topics(stack.broker.bootstrap))
    assert set(catalogue) <= every_topic
    internal = {t for t in every_topic if t.startswith(TRANSFORM_INTERNAL)}
    assert internal, "transform's changelogs are read too"
    with_emails: set[str] = set()
    for topic in sorted(every_topic):  # every topic on the broker: the catalogue's, transform's own, Kafka's
        text = asyncio.run(topic_bytes(stack.broker.bootstrap, topic)).decode(errors="replace").lower()
        assert not [s for s in secrets if s.lower() in text], f"a secret in topic {topic}"
        if any(e in text for e in emails):
            with_emails.add(catalogue.get(topic, topic))
    allowed = EMAIL_TOPICS | internal
    assert with_emails <= allowed, with_emails - allowed
    assert {"kaltura.attendee-status.v1", "marketo.ops.v1"} <= with_emails
