"""The one way children are stopped (SIGTERM, a bounded wait, SIGKILL) and where the broker's jars are found."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kmsync_testing.kafka_broker import BrokerError, libs_dir, pom_path, repository_root
from kmsync_testing.processes import die_with_parent, kill_process, stop_process

# A child that reports it is ready (its SIGTERM handling installed) and then waits on stdin; with
# `ignore`, it ignores SIGTERM; it also starts a grandchild in its process group that does the same and
# would outlive it.
CHILD = """
import signal, subprocess, sys
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = None
if sys.argv[2] == "parent":
    grandchild = subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1], "leaf", ""],
                                  stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    grandchild.stdout.readline()
print(grandchild.pid if grandchild else 0, flush=True)
if grandchild is None:
    while True:  # the leaf outlives its parent unless its process group is signalled
        signal.pause()
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Whatever a failing test leaves running is killed (by pid) at its end."""
    _started.clear()
    yield
    for pid in _started:
        with contextlib.suppress(OSError):
            if CHILD.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():  # still ours, not a reused pid
                os.kill(pid, signal.SIGKILL)


_started: list[int] = []


def _child(mode: str) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen([sys.executable, "-c", CHILD, mode, "parent", CHILD], stdout=subprocess.PIPE,
                               stdin=subprocess.PIPE, preexec_fn=die_with_parent)
    assert process.stdout is not None
    grandchild = int(process.stdout.readline())  # ready: handlers installed, grandchild started
    _started.extend((grandchild, process.pid))
    return process, grandchild


def _ended(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")  # a zombie has ended
    except FileNotFoundError:
        return True


def _gone(pid: int, within: float = 5.0) -> bool:
    """Whether `pid` ends within a few seconds (a signal is delivered asynchronously)."""
    deadline = time.monotonic() + within
    while not _ended(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling another process's state with a deadline
    return True


def test_a_child_that_honours_sigterm_stops_at_once_with_its_process_group() -> None:
    process, grandchild = _child("default")
    started = time.monotonic()
    assert stop_process(process, timeout=20) == -signal.SIGTERM
    assert time.monotonic() - started < 10  # it did not wait for the SIGKILL deadline
    assert _gone(grandchild)


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    process, grandchild = _child("ignore")
    started = time.monotonic()
    assert stop_process(process, timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - started >= 0.5
    assert _gone(grandchild)


def test_stopping_an_exited_child_only_reaps_it_and_kill_is_sigkill() -> None:
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], preexec_fn=die_with_parent)
    done.wait()
    assert stop_process(done) == 3
    process, _ = _child("ignore")
    assert kill_process(process) == -signal.SIGKILL


def test_the_repository_is_found_from_a_subdirectory_and_its_absence_is_explained(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = repository_root()
    assert (root / "deploy" / "kafka" / "pom.xml").is_file()
    assert repository_root(root / "tests" / "support" / "kmsync_testing") == root
    with pytest.raises(BrokerError, match=r"neither .* nor a parent holds deploy/kafka/pom.xml.*KMSYNC_KAFKA_LIBS"):
        repository_root(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KMSYNC_KAFKA_LIBS", str(tmp_path / "jars"))
    assert libs_dir() == tmp_path / "jars"  # explicit: no repository needed
    with pytest.raises(BrokerError, match="KMSYNC_KAFKA_LIBS is not set"):
        pom_path()
    monkeypatch.delenv("KMSYNC_KAFKA_LIBS")
    with pytest.raises(BrokerError):
        libs_dir()
    monkeypatch.chdir(root / "tests")
    assert libs_dir("3.9.1") == root / ".cache" / "kafka" / "3.9.1" / "libs"
