"""A full `kmsync run` (the Stack of apps/kmsync_cli, a small event) leaves no secret and no raw
email in any log file, and no secret in any topic; raw emails appear only in the topics that carry
them for Marketo (docs/configuration.md, "Where emails are"); every other topic has none."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    "marketo.dlq.v1",
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(StackOptions(work_dir=tmp_path / "run", registrants=60, sessions=1, speed=6000, seed=23))
    try:
        s.start()
        yield s
    finally:
        s.stop()


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
    with_emails: set[str] = set()
    for spec in ALL_TOPICS:
        data = asyncio.run(topic_bytes(stack.broker.bootstrap, topic_name(spec, stack.options.topic_prefix)))
        text = data.decode(errors="replace").lower()
        assert not [s for s in secrets if s.lower() in text], f"a secret in topic {spec.name}"
        if any(e in text for e in emails):
            with_emails.add(spec.name)
    assert with_emails <= EMAIL_TOPICS, with_emails - EMAIL_TOPICS
    assert {"kaltura.attendee-status.v1", "marketo.ops.v1"} <= with_emails
