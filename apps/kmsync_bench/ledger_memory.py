"""Measure the memory the sink's activity ledger holds per remembered custom activity.

    .venv/bin/python -m kmsync_bench.ledger_memory [--activities 200000]

The sink remembers every custom activity it knows written, read back from ``marketo.results.v1``
(``KMSYNC_SINK_LEDGER_LOOKBACK_HOURS``, 168 h by default) and from its own outcomes, so that a replay
never sends one twice: the op id, a string, in ``kmsync_sink.memory.ActivityWrites`` (its ``add``, as
``kmsync_sink.ledger_reader`` and the executor call it). This remembers ``--activities`` op ids of the
deployed shape (``kmsync_transform.ledger.activity_op_id``: ``custom_activity:`` and 32 hex digits, a
string of its own each, as a decoded outcome's is) in a fresh ``ActivityWrites`` under tracemalloc and
prints the Python memory still held afterwards (what tracemalloc traces: the requested sizes, without
the allocator's rounding), in all and per activity. Nothing else runs; no broker. A measurement, not a
test: docs/benchmarks.md ("Sink: the activity ledger's memory") records its figures.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

from kmsync_sink.memory import ActivityWrites
from kmsync_transform.ledger import activity_op_id

MUNCHKIN = "123-ABC-456"


@dataclass(frozen=True)
class LedgerMemory:
    activities: int
    #: Bytes traced and still held once every activity is remembered (the ledger and its op ids).
    held_bytes: int

    @property
    def bytes_per_activity(self) -> float:
        return self.held_bytes / self.activities

    def text(self) -> str:
        return (f"{self.activities:,} activities remembered: {self.held_bytes:,} bytes held, "
                f"{self.bytes_per_activity:.0f} bytes per activity "
                f"(≈ {self.bytes_per_activity:.0f} MB per million)")


def op_ids(activities: int) -> Iterator[str]:
    """Distinct activity op ids, one at a time: 50 events × 4 sessions × as many attendees as it takes."""
    for i in range(activities):
        yield activity_op_id(MUNCHKIN, 1000 + i % 50, f"0_session{i // 50 % 4}", f"attendee{i // 200}@example.com")


def measure(activities: int) -> LedgerMemory:
    """The memory a fresh ActivityWrites holds after remembering `activities` written activities."""
    if activities <= 0:
        raise ValueError("activities must be positive")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ledger = ActivityWrites()
        for op_id in op_ids(activities):  # made one at a time: what is traced at the end is what the ledger holds
            ledger.add(op_id)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    if len(ledger) != activities:
        raise AssertionError(f"the ledger holds {len(ledger)} activities, not {activities}")
    return LedgerMemory(activities, held)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.ledger_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--activities", type=int, default=200_000, help="written activities to remember")
    args = p.parse_args(argv)
    if args.activities <= 0:
        p.error("--activities must be positive")
    print(measure(args.activities).text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
