"""Start, watch and stop the local processes of `kmsync run` (and the end-to-end test).

Every child runs in its own process group with PR_SET_PDEATHSIG, so nothing outlives the run even
if the parent is killed; `stop_all()` terminates in reverse start order and reports exit codes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kmsync_kafka.launcher import die_with_parent


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

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
        log = log_path.open("wb")
        full_env = {**os.environ, **(env or {})}
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                   preexec_fn=die_with_parent)
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def wait_http_ok(self, child: Child, url: str, timeout: float = 60.0) -> None:
        """Poll `url` until it answers 2xx; fail fast with the child's log if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
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
        codes: dict[str, int | None] = {}
        for child in reversed(self.children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
                try:
                    child.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.process.pid, signal.SIGKILL)
                    child.process.wait(timeout=5)
            codes[child.name] = child.process.returncode
        return codes
