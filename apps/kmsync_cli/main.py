"""`kmsync <command> ...`: one entry point that dispatches to each service's own CLI.

Every command lives in the package that owns it and exposes ``main(argv: list[str]) -> int``;
this table only names them, so adding a command never touches another service's code.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import traceback
from collections.abc import Callable

COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("kmsync_cli.kafka", "Run a local single-node Apache Kafka broker (KRaft)"),
    "config": ("kmsync_config.cli", "Validate a tenants file"),
    "ingest": ("kmsync_ingest.cli", "Kaltura in: scheduled pull, signed webhooks, CSV upload"),
    "backfill": ("kmsync_ingest.backfill_cli", "Load a Kaltura report CSV export into Kafka"),
    "transform": ("kmsync_transform.cli", "Kaltura records into Marketo operations"),
    "sink": ("kmsync_sink.cli", "Write Marketo operations in the fewest calls"),
    "marketo": ("kmsync_marketo.cli", "Marketo tools: `kmsync marketo check [--apply]`"),
    "dlq": ("kmsync_sink.dlq_cli", "Dead-letter tools: `kmsync dlq replay --topic T`"),
    "trace": ("kmsync_cli.trace", "What happened to one person in one event: Kaltura, transform, Marketo"),
    "reconcile": ("kmsync_cli.reconcile_cli", "Kaltura now against Marketo read back over REST, for one event"),
    "run": ("kmsync_cli.demo", "Run the whole pipeline locally on a realistic virtual event"),
    "chaos": ("kmsync_cli.chaos", "The pipeline under faults, kill -9 and a broker restart, reconciled"),
    "bench": ("kmsync_bench.cli", "Benchmarks: efficiency, budget, latency, capacity, backfill"),
}


#: Exit codes, the same in every command (README "Exit codes").
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: kmsync <command> [options]   (kmsync <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "exit codes: 0 ok, 1 a failure was found, 2 usage or configuration error, "
              "3 a dependency (Kafka, Marketo, Kaltura) is unreachable",
              "KMSYNC_DEBUG=1 prints the traceback of an unexpected error"]
    return "\n".join(lines)


def version() -> str:
    try:
        return importlib.metadata.version("kmsync")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _load(module_name: str) -> Callable[[list[str]], int] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    entry: Callable[[list[str]], int] = module.main
    return entry


def _unreachable_kinds() -> tuple[type[BaseException], ...]:
    """The exception classes that mean "a dependency is down": ours, the OS's, aiokafka's, the local
    broker launcher's (imported here, not at the top, to keep `kmsync --help` fast)."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable

    from kmsync_common.errors import DependencyUnavailable
    from kmsync_testing.kafka_broker import BrokerError

    return (DependencyUnavailable, BrokerError, ConnectionError, TimeoutError, KafkaConnectionError,
            KafkaTimeoutError, NoBrokersAvailable)


def _unreachable(exc: BaseException) -> bool:
    """A dependency is down or unreachable (Kafka, an HTTP endpoint), not a bug of ours: the exception
    or anything in its cause chain is one of `_unreachable_kinds()`."""
    kinds = _unreachable_kinds()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kinds):
            return True
        current = current.__cause__ or current.__context__
    return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.removeprefix(f"{type(exc).__name__}: ")
    return text if len(text) <= 400 else text[:397] + "..."


def run_command(entry: Callable[[list[str]], int], name: str, rest: list[str]) -> int:
    """Run a command's main; whatever escapes it becomes one line and a documented exit code."""
    try:
        return entry(rest)
    except KeyboardInterrupt:
        print(f"kmsync {name}: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise  # argparse's own usage errors (exit 2) and explicit exits
    except Exception as exc:  # the top-level handler: one line, never a traceback by default
        from kmsync_config.tenants import ConfigError

        if os.environ.get("KMSYNC_DEBUG"):
            traceback.print_exc()
        if isinstance(exc, ConfigError | ValueError) and not _unreachable(exc):
            print(f"kmsync {name}: configuration error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        if _unreachable(exc):
            print(f"kmsync {name}: a dependency is unreachable: {type(exc).__name__}: {_one_line(exc)} "
                  "(check that Kafka and the configured endpoints are up; KMSYNC_KAFKA_BOOTSTRAP)",
                  file=sys.stderr)
            return EXIT_UNREACHABLE
        print(f"kmsync {name}: unexpected error: {type(exc).__name__}: {_one_line(exc)} "
              "(KMSYNC_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(_usage(), file=sys.stderr)
        return EXIT_USAGE
    if args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return EXIT_OK
    if args[0] in {"-V", "--version", "version"}:
        print(f"kmsync {version()}")
        return EXIT_OK
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"kmsync: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return EXIT_USAGE
    entry = _load(COMMANDS[name][0])
    if entry is None:
        print(f"kmsync: `{name}` is not built yet in this version", file=sys.stderr)
        return EXIT_USAGE
    return run_command(entry, name, rest)


if __name__ == "__main__":
    sys.exit(main())
