"""CPU accounting from /proc/<pid>/stat text and kmsync's multiple of the passthrough. Pure, plus
one look at this very process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from kmsync_bench.cpu import (
    KMSYNC_PROCESSES,
    ProcStat,
    cpu_seconds,
    kmsync_total,
    multiple,
    parse_stat,
    per_10k,
    spent,
    tree_seconds,
)


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    # fields 1-2, then 3 (state) .. 17 (cstime), then a few more as the kernel prints them
    rest = ["S", str(ppid), str(pid), str(pid), "0", "-1", "4194560", "100", "0", "0", "0",
            str(utime), str(stime), str(cutime), str(cstime), "20", "0", "9", "0", "12345"]
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


def test_stat_line_gives_utime_plus_stime_and_waited_children_in_seconds() -> None:
    s = parse_stat(stat_line(42, "python", 7, utime=250, stime=50, cutime=30, cstime=10), ticks=100)
    assert s == ProcStat(pid=42, ppid=7, own_seconds=3.0, children_seconds=0.4)


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    s = parse_stat(stat_line(9, "kmsync (ingest) x", 1, utime=100, stime=100), ticks=100)
    assert (s.pid, s.ppid, s.own_seconds) == (9, 1, 2.0)


@pytest.mark.parametrize("text", ["", "42 python S 1", "42 (python) S 1 2 3"])
def test_text_that_is_not_a_stat_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_stat(text)


def test_a_tree_sums_the_root_its_live_descendants_and_their_waited_children() -> None:
    stats = [ProcStat(10, 1, 1.0, 0.5), ProcStat(11, 10, 2.0, 0.0), ProcStat(12, 11, 0.25, 0.0),
             ProcStat(20, 1, 100.0, 0.0)]  # an unrelated process
    assert tree_seconds(10, stats) == pytest.approx(3.75)
    assert tree_seconds(11, stats) == pytest.approx(2.25)
    assert tree_seconds(99, stats) is None


def test_spent_is_the_difference_for_processes_measured_both_times() -> None:
    assert spent({"ingest": 1.0, "sink": 2.0, "gone": 5.0}, {"ingest": 1.5, "sink": 2.0}) == {
        "ingest": 0.5, "sink": 0.0}


def test_per_10k_and_the_multiple_of_the_passthrough() -> None:
    assert per_10k(1.4, 20_000) == pytest.approx(0.7)
    per_process = {"ingest": 0.7, "transform": 1.9, "sink": 3.2, "broker": 1.5, "marketo-sandbox": 1.0}
    assert kmsync_total(per_process) == pytest.approx(7.3)  # the sandbox is Marketo's, not kmsync's
    assert multiple(7.3, 0.65) == pytest.approx(11.23, rel=1e-3)
    with pytest.raises(KeyError):
        kmsync_total({"ingest": 0.7, "transform": 1.9, "sink": 3.2})  # no broker: no flattering partial sum
    with pytest.raises(ValueError):
        multiple(7.3, 0.0)
    with pytest.raises(ValueError):
        per_10k(1.0, 0)
    assert set(KMSYNC_PROCESSES) == {"ingest", "transform", "sink", "broker"}


def test_a_busy_child_process_is_counted_in_its_parents_tree() -> None:
    """Real /proc: a child burning CPU shows up under this process while it lives."""
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\nimport sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:  # poll with a deadline until the child has burnt its 0.3 s
            alone = cpu_seconds({"child": [child.pid]})
            if alone.get("child", 0.0) >= 0.3 or time.monotonic() > deadline:
                break
        assert alone["child"] >= 0.3
        both = cpu_seconds({"me": [os.getpid()], "child": [child.pid]})
        assert both["me"] >= both["child"] >= 0.3
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    assert "child" not in cpu_seconds({"child": [child.pid]})  # reaped: gone
