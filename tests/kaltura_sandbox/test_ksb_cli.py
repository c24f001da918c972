"""The ``kaltura-sandbox`` command: starts, serves, plays at --speed; refuses a bad scenario file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from kmsync_testing.processes import die_with_parent, free_port, stop_process
from kmsync_testing.waiting import wait_for


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("registrants: 120\nsessions: 2\n", encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaltura_sandbox", "--host", "127.0.0.1", "--port", str(port),
         "--scenario", str(scenario), "--seed", "4", "--speed", "3600"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_process(proc, timeout=10)


async def status_when_up(http: httpx.AsyncClient, base: str, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    async def status() -> dict[str, object] | None:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
        try:
            answer: dict[str, object] = (await http.get(f"{base}/_sandbox/status", timeout=1)).json()
            return answer
        except httpx.HTTPError:
            return None  # not listening yet

    found: dict[str, object] = await wait_for(status, within=30, what="kaltura-sandbox to serve /_sandbox/status")
    return found


async def test_cli_serves_the_scenario_and_plays_at_speed(sandbox_process: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, proc = sandbox_process
    async with httpx.AsyncClient() as http:
        first = await status_when_up(http, base, proc)
        assert first["speed"] == 3600 and first["registrants"] == 120 and len(first["sessions"]) == 2  # type: ignore[arg-type]

        async def moved() -> bool:
            now = (await http.get(f"{base}/_sandbox/status")).json()["now"]
            return datetime.fromisoformat(now) > datetime.fromisoformat(str(first["now"]))

        await wait_for(moved, within=10, what="the scenario clock to move at --speed")
        creds = (await http.get(f"{base}/_sandbox/credentials")).json()
        ks = (await http.post(f"{base}/api_v3/service/session/action/start", data={
            "format": "1", "secret": creds["admin_secret"], "partnerId": str(creds["partner_id"]), "type": "2"})).json()
        assert isinstance(ks, str) and ks


def test_cli_refuses_a_bad_scenario_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sesions: 3\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "kaltura_sandbox", "--scenario", str(bad)],
                            capture_output=True, timeout=60, check=False)
    assert result.returncode != 0
    assert b"sesions" in result.stderr
