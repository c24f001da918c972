"""The `kmsync` entry point: one line per error and the same exit codes in every command (issue #20)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmsync_cli.main import EXIT_FAILURE, EXIT_UNREACHABLE, EXIT_USAGE, main, run_command
from kmsync_testing.kafka_broker import free_port

KMSYNC = str(Path(sys.executable).parent / "kmsync")


def test_version_and_bare_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("kmsync 0.")
    assert main([]) == EXIT_USAGE  # `kmsync` alone is a usage error, not success
    assert "exit codes: 0 ok, 1" in capsys.readouterr().err


def test_escaping_errors_become_one_line_and_a_documented_code(capsys: pytest.CaptureFixture[str]) -> None:
    def unreachable(_: list[str]) -> int:
        try:
            raise ConnectionRefusedError("Connect call failed ('127.0.0.1', 1)")
        except ConnectionRefusedError as exc:
            raise RuntimeError("cannot reach Kafka at 127.0.0.1:1") from exc

    def bad_config(_: list[str]) -> int:
        raise ValueError("tenants.yaml: events.0.program_id: must be > 0")

    def bug(_: list[str]) -> int:
        raise KeyError("oops")

    assert run_command(unreachable, "x", []) == EXIT_UNREACHABLE
    assert run_command(bad_config, "x", []) == EXIT_USAGE
    assert run_command(bug, "x", []) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 3
    assert "kmsync x: a dependency is unreachable: RuntimeError: cannot reach Kafka at 127.0.0.1:1" in err


@pytest.mark.parametrize("argv", [["dlq", "replay", "--topic", "marketo.dlq.v1", "--dry-run"], ["transform"]])
def test_a_command_with_the_broker_down_prints_one_line_and_exits_3(argv: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "KMSYNC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
           "KMSYNC_TENANTS_FILE": str(Path(__file__).parents[2] / "deploy/compose/tenants.yaml"),
           "SANDBOX_MARKETO_CLIENT_SECRET": "x", "SANDBOX_KALTURA_ADMIN_SECRET": "y",
           "KMSYNC_HTTP_PORT": str(free_port())}
    done = subprocess.run([KMSYNC, *argv], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == EXIT_UNREACHABLE, done.stderr
    assert "Traceback" not in done.stderr
    assert "a dependency is unreachable" in done.stderr
