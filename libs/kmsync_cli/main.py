"""`kmsync <command> ...`: one entry point that dispatches to each service's own CLI.

Every command lives in the package that owns it and exposes ``main(argv: list[str]) -> int``;
this table only names them, so adding a command never touches another service's code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("kmsync_kafka.cli", "Run a local single-node Apache Kafka broker (KRaft)"),
    "config": ("kmsync_config.cli", "Validate a tenants file and settings"),
    "ingest": ("ingest.cli", "Kaltura in: scheduled pull, signed webhooks, CSV upload"),
    "backfill": ("ingest.backfill_cli", "Load a Kaltura report CSV export into Kafka"),
    "transform": ("transform.cli", "Kaltura records into Marketo operations"),
    "sink": ("marketo_sink.cli", "Write Marketo operations in the fewest calls"),
    "marketo": ("kmsync_marketo.cli", "Marketo tools: `kmsync marketo check [--apply]`"),
    "dlq": ("marketo_sink.dlq_cli", "Dead-letter tools: `kmsync dlq replay --topic T`"),
    "run": ("kmsync_cli.demo", "Run the whole pipeline locally on a realistic virtual event"),
    "chaos": ("kmsync_cli.chaos", "The pipeline under faults, kill -9 and a broker restart, reconciled"),
    "bench": ("kmsync_bench.cli", "Benchmarks: efficiency, budget, latency, capacity, backfill"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: kmsync <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _load(module_name: str) -> Callable[[list[str]], int] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    entry: Callable[[list[str]], int] = module.main
    return entry


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"kmsync: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    entry = _load(COMMANDS[name][0])
    if entry is None:
        print(f"kmsync: `{name}` is not built yet in this version", file=sys.stderr)
        return 2
    return entry(rest)


if __name__ == "__main__":
    sys.exit(main())
