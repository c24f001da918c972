"""Start, watch and stop the local processes of `kmsync run` (and the end-to-end test).

Every child runs in its own process group with PR_SET_PDEATHSIG, so nothing outlives the run even
if the parent is killed; `stop_all()` terminates in reverse start order and reports exit codes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kmsync_common.clock import SYSTEM_CLOCK
from kmsync_testing.processes import die_with_parent, kill_process, stop_process


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    #: The command line and extra environment it was started with (a restart reuses them).
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: How many times it was started again after a kill or an exit.
    restarts: int = 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        child = Child(name, self._spawn(argv, env or {}, log_path, "wb"), log_path, list(argv), dict(env or {}))
        self.children.append(child)
        return child

    @staticmethod
    def _spawn(argv: list[str], env: dict[str, str], log_path: Path, mode: str) -> subprocess.Popen[bytes]:
        with log_path.open(mode) as log:  # the child keeps its own descriptor
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                    preexec_fn=die_with_parent)

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def kill(self, child: Child) -> None:
        """SIGKILL the child's whole process group (kill -9: no shutdown code runs) and reap it."""
        kill_process(child.process)

    def restart(self, child: Child) -> None:
        """Start an exited (or killed) child again with the same command line and environment; its
        log goes on in the same file."""
        if child.process.poll() is None:
            raise RuntimeError(f"{child.name} is still running (pid {child.process.pid})")
        with child.log_path.open("ab") as log:
            log.write(f"\n----- restarted (was exit {child.process.returncode}) -----\n".encode())
        child.process = self._spawn(child.argv, child.env, child.log_path, "ab")
        child.restarts += 1

    def wait_http_ok(self, child: Child, url: str, timeout: float = 60.0) -> None:
        """Poll `url` until it answers 2xx; fail fast with the child's log if it exits."""
        deadline = SYSTEM_CLOCK.monotonic() + timeout
        while SYSTEM_CLOCK.monotonic() < deadline:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if 200 <= resp.status < 300:
                        return
            time.sleep(0.2)  # polling a child process's readiness
        raise RuntimeError(f"{child.name} not ready at {url} after {timeout:.0f}s:\n{child.log_tail()}")

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.process.poll() is not None]

    def stop_all(self, timeout: float = 20.0) -> dict[str, int | None]:
        return {child.name: stop_process(child.process, timeout) for child in reversed(self.children)}
