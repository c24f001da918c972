"""CPU seconds a process (and its descendants) spent, from Linux /proc/<pid>/stat (no psutil).

``utime`` and ``stime`` (fields 14 and 15 of proc(5)'s stat line) count every thread of the process
in clock ticks; ``cutime`` and ``cstime`` (16, 17) count its children that exited and were waited
for. A process's CPU is its own time plus its waited-for children's plus its live descendants'
(each counted the same way), so replicas and worker processes add up to one figure per service.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from kmsync_common.collector import scheduled_collections
from kmsync_config.settings import CommonSettings

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    #: utime + stime of every thread, in seconds.
    own_seconds: float
    #: cutime + cstime: children that exited and were waited for, in seconds.
    children_seconds: float


def parse_stat(text: str, ticks: int = CLOCK_TICKS) -> ProcStat:
    """One /proc/<pid>/stat line. The command name (field 2) may hold spaces and ')', so fields
    are counted from its last ')'. Raises ValueError for text that is not a stat line."""
    head, sep, tail = text.rpartition(")")
    if not sep or "(" not in head:
        raise ValueError(f"not a /proc stat line: {text[:80]!r}")
    fields = tail.split()
    # tail starts at field 3 (state): field n is fields[n - 3]
    if len(fields) < 15:
        raise ValueError(f"a /proc stat line with {len(fields) + 2} fields, expected at least 17")
    pid = int(head.split("(", 1)[0])
    utime, stime, cutime, cstime = (int(fields[n - 3]) for n in (14, 15, 16, 17))
    return ProcStat(pid=pid, ppid=int(fields[4 - 3]), own_seconds=(utime + stime) / ticks,
                    children_seconds=(cutime + cstime) / ticks)


def tree_seconds(root: int, stats: Iterable[ProcStat]) -> float | None:
    """CPU seconds of ``root`` and every live descendant (each with its waited-for children);
    None when ``root`` is not among ``stats`` (it is gone)."""
    by_parent: dict[int, list[ProcStat]] = {}
    by_pid: dict[int, ProcStat] = {}
    for s in stats:
        by_pid[s.pid] = s
        by_parent.setdefault(s.ppid, []).append(s)
    if root not in by_pid:
        return None
    total, todo, seen = 0.0, [by_pid[root]], {root}
    while todo:
        s = todo.pop()
        total += s.own_seconds + s.children_seconds
        for child in by_parent.get(s.pid, []):
            if child.pid not in seen:
                seen.add(child.pid)
                todo.append(child)
    return total


def read_all_stats(proc: Path = Path("/proc")) -> list[ProcStat]:
    """Every process's stat that can be read now (processes come and go while this runs)."""
    out: list[ProcStat] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            out.append(parse_stat((entry / "stat").read_text()))
        except (OSError, ValueError):
            continue
    return out


def cpu_seconds(groups: Mapping[str, Iterable[int]], proc: Path = Path("/proc")) -> dict[str, float]:
    """Per name, the CPU seconds of its root processes' trees summed (a replica per pid); a name
    whose processes are all gone is left out."""
    stats = read_all_stats(proc)
    out: dict[str, float] = {}
    for name, pids in groups.items():
        values = [v for v in (tree_seconds(pid, stats) for pid in pids) if v is not None]
        if values:
            out[name] = sum(values)
    return out


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent between two samples, for names present in both."""
    return {name: max(0.0, after[name] - before[name]) for name in before if name in after}


def per_10k(seconds: float, items: int) -> float:
    """CPU seconds per 10,000 items."""
    if items <= 0:
        raise ValueError("per 10,000 of nothing")
    return seconds * 10_000 / items


def multiple(kmsync_per_item: float, passthrough_per_item: float) -> float:
    """How many times the passthrough's CPU per record kmsync spends per row."""
    if passthrough_per_item <= 0:
        raise ValueError("the passthrough spent no measurable CPU: no multiple of it")
    return kmsync_per_item / passthrough_per_item


#: The processes whose CPU is kmsync's cost (the Marketo sandbox stands in for Marketo: not counted).
KMSYNC_PROCESSES = ("ingest", "transform", "sink", "broker")


def kmsync_total(per_10k_by_process: Mapping[str, float]) -> float:
    """kmsync's CPU per 10,000 rows: its three services and the broker; raises KeyError when one
    of them was not measured (a partial sum would flatter the multiple)."""
    return sum(per_10k_by_process[name] for name in KMSYNC_PROCESSES)


def services_collections() -> AbstractContextManager[None]:
    """The services' garbage collector schedule (kmsync_common.collector), read from the same settings
    (``KMSYNC_GC_FULL_THRESHOLD``): an in-process benchmark of a service's code runs under it."""
    return scheduled_collections(CommonSettings().gc_full_threshold)
