"""`kmsync ingest` as a process: starts from the environment and a tenants file, serves /readyz,
pulls, and stops cleanly on SIGTERM; configuration errors exit 2 with the problem listed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from kaltura_sandbox.testing import running_sandbox
from kmsync_cli.main import main as kmsync_main
from kmsync_contracts.topics import ATTENDEE_STATUS
from kmsync_ingest.cli import main as ingest_main
from kmsync_testing.ingest import tenants_document
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic
from kmsync_testing.waiting import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_kmsync_ingest_runs_as_a_process(
    kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    async with running_sandbox({"registrants": 30, "sessions": 1}, seed=2) as sb:
        sb.advance_to_end()
        tenants = tmp_path / "tenants.yaml"
        tenants.write_text(yaml.safe_dump(tenants_document(sb, tmp_path / "secrets")))
        port = _free_port()
        env = {**os.environ, "KMSYNC_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "KMSYNC_TOPIC_PREFIX": topic_prefix,
               "KMSYNC_TENANTS_FILE": str(tenants), "KMSYNC_HTTP_HOST": "127.0.0.1", "KMSYNC_HTTP_PORT": str(port),
               "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from kmsync_cli.main import main; sys.exit(main())", "ingest",
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            async def ready() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, within=60, what="/readyz")
            visible = [a for a in sb.truth()["attendees"] if not a["deleted"]]

            async def pulled() -> bool:
                return len(await read_topic(kafka_broker.bootstrap, ATTENDEE_STATUS, topic_prefix)) == len(visible)

            await wait_for(pulled, within=30, what="the first scheduled pull")
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert code == 0


def test_configuration_problems_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest_main(["--tenants", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the tenants file" in capsys.readouterr().err


async def test_backfill_with_kafka_or_ingest_down_exits_3_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """backfill raises its DependencyUnavailable; the top-level `kmsync` handler turns it into exit 3."""
    async with running_sandbox({"registrants": 5, "sessions": 1}, seed=4) as sb:
        tenants = tmp_path / "tenants.yaml"
        tenants.write_text(yaml.safe_dump(tenants_document(sb, tmp_path / "secrets")))
        entry = sb.session_entry_ids[0]
    answers = tmp_path / "answers.csv"
    answers.write_text("entry_id,poll_id,poll_type,question,user_id,email,answer,answered_at\n"
                       f"{entry},p1,crowd vote,Q?,u1,u1@acme.com,Yes,2025-06-16T14:00:00.000Z\n")
    down = f"127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("KMSYNC_KAFKA_BOOTSTRAP", down)
    monkeypatch.setenv("KMSYNC_KAFKA_ACK_TIMEOUT_SECONDS", "1")
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    for argv in (["--tenants", str(tenants)], ["--url", f"http://{down}", "--token-file", str(token)]):
        code = await asyncio.to_thread(kmsync_main, ["backfill", str(answers), *argv])
        err = capsys.readouterr().err
        assert code == 3, err
        assert len(err.strip().splitlines()) == 1 and down in err and "Traceback" not in err
