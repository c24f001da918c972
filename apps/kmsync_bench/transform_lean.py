"""The lean transform engine against the quix engine, CPU per input row (issue #22).

``python -m kmsync_bench.transform_lean [--people 5000] [--repeat 3] [--lean-only] [--profile out.pstats]``
produces ``kmsync_bench.transform_cpu``'s ``--engagement-only`` input (one report 4021 engagement
snapshot per person, the capacity section's case) to a private broker under a fresh topic prefix per
pass, and runs the production engines (``kmsync_transform.engine_lean.LeanTransform`` and
``kmsync_transform.engine_quix.QuixTransform``) alternately over it (a warm-up pass each first), reporting
each one's CPU s per 10,000 input rows for the process and for the engine's thread, from the first record
processed to the last operation emitted (``transform_cpu.timed_run``: the start and stop points of
``transform_cpu --app``), and the broker's CPU between the same two points (its process's utime+stime from
/proc). Session 10's measurement prototype of the lean loop became engine_lean.py (session 14).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kmsync_bench.cpu import parse_stat, per_10k, services_collections
from kmsync_bench.transform_cpu import (
    RETENTION,
    Input,
    Timed,
    app_pass,
    inputs,
    operations,
    produce,
    tenants,
    timed_run,
)
from kmsync_testing.kafka_broker import KafkaBroker, start_broker
from kmsync_transform.engine_lean import LeanTransform
from kmsync_transform.settings import TransformSettings


def lean_pass(bootstrap: str, prefix: str, state_dir: Path, ops: int, profiler: cProfile.Profile | None,
              probe: Callable[[], float] | None = None) -> Timed:
    """One run of the lean engine over records already on the topics: CPU s of the process and of its
    thread from its first record processed to its last operation emitted (as ``transform_cpu.app_pass``)."""
    settings = TransformSettings(kafka_bootstrap=bootstrap, topic_prefix=prefix, transform_state_dir=state_dir,
                                 transform_state_retention_seconds=int(RETENTION.total_seconds()))
    engine = LeanTransform(settings, tenants())
    return timed_run(engine.run, engine.stop, engine.metrics, ops, profiler, probe)


#: The engines measured, in the order each pass runs them.
ENGINES = ("lean", "quix")
#: Per pass: (process, engine thread, broker) CPU s per 10,000 input rows.
Figures = tuple[float, float, float]


def one_pass(engine: str, broker: KafkaBroker, prefix: str, state: Path, records: list[Input],
             profiler: cProfile.Profile | None) -> Timed:
    """The engine's process, thread and the broker's CPU s from its first record to its last operation."""
    ops = operations(len(records), engagement_only=True)
    stat = Path(f"/proc/{broker.process.pid}/stat")

    def broker_seconds() -> float:
        return parse_stat(stat.read_text()).own_seconds

    if engine == "lean":
        return lean_pass(broker.bootstrap, prefix, state, ops, profiler, broker_seconds)
    return app_pass(broker.bootstrap, prefix, state, records, ops, profiler, broker_seconds)


def measure(people: int, repeat: int, engines: Iterable[str], profile: Path | None) -> dict[str, list[Figures]]:
    """Alternating passes over the same input (a warm-up pass of each first, not reported), each on topics of
    its own: per engine and pass (process, engine thread, broker) CPU s per 10,000 input rows.
    ``profile``: cProfile of the lean loop's thread."""
    records = inputs(people, engagement_only=True)
    profiler = cProfile.Profile(time.thread_time) if profile is not None else None
    out: dict[str, list[Figures]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory(prefix="kmsync-transform-lean-") as tmp:
        broker = start_broker(Path(tmp) / "kafka")
        try:
            for n in range(repeat + 1):
                for engine in out:
                    prefix = f"{engine}{n}."
                    asyncio.run(produce(broker.bootstrap, prefix, records))
                    spent = one_pass(engine, broker, prefix, Path(tmp) / f"state-{engine}-{n}", records,
                                     profiler if n and engine == "lean" else None)
                    if n:
                        figures = per_10k(spent[0], people), per_10k(spent[1], people), per_10k(spent[2], people)
                        out[engine].append(figures)
                        print(f"pass {n} {engine}: process {figures[0]:.3f}, engine thread {figures[1]:.3f}, "
                              f"broker {figures[2]:.3f} CPU s per 10,000 input rows", flush=True)
        finally:
            broker.stop()
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m kmsync_bench.transform_lean", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--people", type=int, default=5_000, help="one engagement snapshot each")
    p.add_argument("--repeat", type=int, default=3, help="measured passes per engine")
    p.add_argument("--lean-only", action="store_true", help="the lean loop alone (no quix passes)")
    p.add_argument("--profile", type=Path, help="cProfile statistics of the lean loop's thread")
    args = p.parse_args(argv)
    engines = ("lean",) if args.lean_only else ENGINES
    with services_collections():
        results = measure(args.people, args.repeat, engines, args.profile)
    for engine, values in results.items():
        for what, index in (("process", 0), ("engine thread", 1), ("broker", 2)):
            figures = [v[index] for v in values]
            print(f"transform {engine}, {what}, CPU s per 10,000 input rows: "
                  + ", ".join(f"{v:.3f}" for v in figures) + f" (median {statistics.median(figures):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
