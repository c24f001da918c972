"""Each service's command runs under the garbage collector schedule (kmsync_common.collector): its ``main`` holds
a ``with scheduled_collections(settings.gc_full_threshold)`` block, so KMSYNC_GC_FULL_THRESHOLD reaches the process.

Read with ``ast``: running the commands needs Kafka and their configuration, and what matters here is that the
block is there, around the work, in every one of them. The schedule's own behaviour is tests/common/test_collector.py's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("kmsync_ingest", "kmsync_transform", "kmsync_sink")


def schedules_in_main(source: str) -> list[str]:
    """The argument of every ``with scheduled_collections(<arg>)`` inside the module's ``main``, as source text."""
    tree = ast.parse(source)
    found: list[str] = []
    for fn in tree.body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name == "main"):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.With):
                for item in node.items:
                    call = item.context_expr
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                            and call.func.id == "scheduled_collections":
                        found += [ast.unparse(arg) for arg in call.args]
    return found


def test_the_check_finds_the_block_and_its_argument() -> None:
    assert schedules_in_main("def main(argv):\n    with scheduled_collections(settings.gc_full_threshold):\n"
                             "        return 0\n") == ["settings.gc_full_threshold"]
    assert schedules_in_main("def main(argv):\n    return run()\n") == []
    assert schedules_in_main("def other():\n    with scheduled_collections(s.gc_full_threshold):\n        pass\n") == []


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_command_runs_under_the_schedule(service: str) -> None:
    source = (REPO / "services" / service / "cli.py").read_text(encoding="utf-8")
    assert schedules_in_main(source) == ["settings.gc_full_threshold"], (
        f"services/{service}/cli.py: main() must run the service inside "
        "`with scheduled_collections(settings.gc_full_threshold):` (kmsync_common.collector)")
