"""Child processes of tests and of the local stack: start them so they never outlive their parent, find a
free port for them, and stop them the one way (SIGTERM, a bounded wait, then SIGKILL).

Children are started with ``preexec_fn=die_with_parent``: each leads its own process group (so stopping it
reaches whatever it started) and gets SIGTERM if the Python process that started it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
from typing import Any

#: How long a SIGKILLed process may take to be reaped before that counts as an error.
REAP_TIMEOUT = 10.0


def die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the child gets SIGTERM if the Python process that started it dies (no orphans), and leads a
    new session (its own process group)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setsid()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _signal(process: subprocess.Popen[Any], sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)


def stop_process(process: subprocess.Popen[Any], timeout: float = 20.0, *, group: bool = True) -> int | None:
    """Stop a child cleanly if it can be: SIGTERM (to its whole process group when ``group``, the way
    ``die_with_parent`` children are started), wait up to ``timeout`` seconds, then SIGKILL and reap it.
    Returns its exit code (negative: the signal that ended it); a child that already exited is only reaped."""
    if process.poll() is None:
        _signal(process, signal.SIGTERM, group)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL, group)
            process.wait(timeout=REAP_TIMEOUT)
    return process.returncode


def kill_process(process: subprocess.Popen[Any], *, group: bool = True) -> int | None:
    """SIGKILL (kill -9: no shutdown code runs) and reap; returns the exit code."""
    if process.poll() is None:
        _signal(process, signal.SIGKILL, group)
    process.wait(timeout=REAP_TIMEOUT)
    return process.returncode


__all__ = ["die_with_parent", "free_port", "kill_process", "stop_process"]
