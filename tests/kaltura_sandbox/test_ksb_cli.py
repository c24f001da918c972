"""The ``kaltura-sandbox`` command: starts, serves, plays at --speed; refuses a bad scenario file."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("registrants: 120\nsessions: 2\n", encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaltura_sandbox", "--host", "127.0.0.1", "--port", str(port),
         "--scenario", str(scenario), "--seed", "4", "--speed", "3600"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_up(base: str, proc: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
        try:
            status: dict[str, object] = httpx.get(f"{base}/_sandbox/status", timeout=1).json()
            return status
        except httpx.HTTPError:
            time.sleep(0.05)  # waiting for a child process to bind; no in-process signal exists
    raise AssertionError("kaltura-sandbox did not start")


def test_cli_serves_the_scenario_and_plays_at_speed(sandbox_process: tuple[str, subprocess.Popen[bytes]]) -> None:
    base, proc = sandbox_process
    first = wait_up(base, proc)
    assert first["speed"] == 3600 and first["registrants"] == 120 and len(first["sessions"]) == 2  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while True:
        now = httpx.get(f"{base}/_sandbox/status").json()["now"]
        if datetime.fromisoformat(now) > datetime.fromisoformat(str(first["now"])):
            break
        assert time.monotonic() < deadline, "scenario clock does not move at --speed"
    creds = httpx.get(f"{base}/_sandbox/credentials").json()
    ks = httpx.post(f"{base}/api_v3/service/session/action/start", data={
        "format": "1", "secret": creds["admin_secret"], "partnerId": str(creds["partner_id"]), "type": "2"}).json()
    assert isinstance(ks, str) and ks


def test_cli_refuses_a_bad_scenario_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sesions: 3\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "kaltura_sandbox", "--scenario", str(bad)],
                            capture_output=True, timeout=60, check=False)
    assert result.returncode != 0
    assert b"sesions" in result.stderr
