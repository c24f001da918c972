"""The machine a run happened on, and peak memory of a process (Linux /proc, no psutil)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from kmsync_bench.report import CodeVersion, Machine

REPO_ROOT = Path(__file__).resolve().parents[2]


def _meminfo_kib(field: str, text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def parse_status_kib(status_text: str, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (``VmHWM``, ``VmRSS``) in KiB, or None."""
    return _meminfo_kib(field, status_text)


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set size) of a live process in MiB; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = parse_status_kib(text, "VmHWM")
    return None if kib is None else round(kib / 1024.0, 1)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(kafka_version: str) -> Machine:
    try:
        mem_kib = _meminfo_kib("MemTotal", Path("/proc/meminfo").read_text()) or 0
    except OSError:
        mem_kib = 0
    return Machine(
        cpu_count=os.cpu_count() or 1, cpu_model=cpu_model(), memory_gib=round(mem_kib / 1024 / 1024, 1),
        python=sys.version.split()[0], python_build=f"{sys.base_prefix} {' '.join(platform.python_build())}",
        kafka_version=kafka_version, platform=platform.platform(),
        load_average=tuple(round(x, 2) for x in os.getloadavg()),
    )


def code_version(repo: Path = REPO_ROOT) -> CodeVersion:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30,
                                  check=False)
        except OSError:
            return ""
        return done.stdout if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "services", "libs").splitlines() if line]
    return CodeVersion(commit=git("rev-parse", "HEAD").strip() or "unknown", uncommitted_paths=changed)
