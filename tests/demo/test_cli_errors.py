"""The `kmsync` entry point: one line per error and the same exit codes in every command (issue #20)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmsync_cli.main import EXIT_FAILURE, EXIT_UNREACHABLE, EXIT_USAGE, main, run_command
from kmsync_common.errors import DependencyUnavailable
from kmsync_testing.kafka_broker import BrokerError, free_port

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


class _ServiceDown(DependencyUnavailable):
    """A service's own "dependency down" error, raised without an underlying client error."""


@pytest.mark.parametrize("error", [_ServiceDown("Kafka did not acknowledge within 10s"),
                                   BrokerError("the broker exited: port 9092 in use")])
def test_dependency_errors_are_recognised_by_their_class(error: Exception,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def down(_: list[str]) -> int:
        raise error

    assert run_command(down, "x", []) == EXIT_UNREACHABLE
    assert f"a dependency is unreachable: {type(error).__name__}" in capsys.readouterr().err


def test_a_class_merely_named_like_a_dependency_error_is_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    kafka_unavailable = type("KafkaUnavailable", (RuntimeError,), {})  # not a DependencyUnavailable

    def bug(_: list[str]) -> int:
        raise kafka_unavailable("a bug that happens to share the name")

    assert run_command(bug, "x", []) == EXIT_FAILURE
    assert "unexpected error: KafkaUnavailable" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run"], ["kafka", "start"], ["config", "check"], ["chaos"], ["bench"]])
def test_every_option_of_the_operator_commands_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    options = [line for line in text.splitlines() if line.strip().startswith("-") and "--help" not in line]
    assert options, text
    # argparse puts an option's help on its line or the next: a bare option line followed by another
    # option (or nothing) has none.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith("--") or "--help" in line:
            continue
        has_help_here = "  " in stripped
        next_line = lines[i + 1].strip() if i + 1 < len(lines) else ""
        has_help_next = bool(next_line) and not next_line.startswith("-")
        assert has_help_here or has_help_next, f"{' '.join(command)}: {stripped} has no help text"


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
