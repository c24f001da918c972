"""What `kmsync run` says when it stops without a reconciliation (issue #20 item 7: SIGTERM during a
run printed "did not finish before the timeout")."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from kmsync_cli.demo import play_and_report
from kmsync_cli.stack import Stack, StackOptions


class _IdleStack:
    """A stack that starts nothing and whose event never finishes."""

    def __init__(self) -> None:
        self.played = False
        self.options = StackOptions()

    def start(self) -> None:
        pass

    def play(self) -> None:
        self.played = True

    def check_alive(self) -> None:
        pass

    def metrics(self, name: str) -> str:
        return ""

    def kaltura_status(self) -> dict[str, Any]:
        return {"now": "2025-06-16T13:00:00Z", "finished": False}


def _args(timeout: float) -> argparse.Namespace:
    return argparse.Namespace(work_dir=Path(".run"), registrants=10, sessions=1, speed=1.0, timeout=timeout,
                              keep_running=False)


def test_sigterm_during_the_run_is_reported_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    stop.set()  # SIGTERM arrived
    stack = _IdleStack()
    assert play_and_report(cast(Stack, stack), _args(900), None, stop) == 1
    out = capsys.readouterr().out
    assert stack.played
    assert "stopped by SIGTERM before the reconciliation was clean" in out
    assert "timeout" not in out


def test_a_run_out_of_time_names_the_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    assert play_and_report(cast(Stack, _IdleStack()), _args(0), None, threading.Event()) == 1
    out = capsys.readouterr().out
    assert "the event did not finish within --timeout 0s" in out and "SIGTERM" not in out
