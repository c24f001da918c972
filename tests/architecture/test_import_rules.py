"""The architecture's import rules, checked on the static import graph (``ast``; nothing is imported).

Components (top-level packages) and what each may import besides itself:
- libraries (libs/): other libraries only;
- services (services/): libraries only (never another service, a sandbox, an application or test support);
- sandboxes (tests/support/*_sandbox): ``kmsync_contracts`` only (a test double depends on no product code);
- ``kmsync_testing`` (tests/support): libraries, services and sandboxes;
- applications (apps/): anything.
And no import cycle between modules. Every import statement counts: top level, inside a function, and under
``if TYPE_CHECKING:``; imports of third-party packages are ignored. A package's ``__init__`` is not counted as
imported by its submodules (only ``import a.b`` / ``from a import b`` statements make arrows).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("libs", "services", "apps", "tests/support")

LIBRARIES = frozenset({"kmsync_common", "kmsync_config", "kmsync_contracts", "kmsync_kafka", "kmsync_kaltura",
                       "kmsync_marketo"})
SERVICES = frozenset({"kmsync_ingest", "kmsync_transform", "kmsync_sink"})
SANDBOXES = frozenset({"kaltura_sandbox", "marketo_sandbox"})
APPS = frozenset({"kmsync_cli", "kmsync_bench"})
TESTING = frozenset({"kmsync_testing"})
KIND = {**dict.fromkeys(LIBRARIES, "library"), **dict.fromkeys(SERVICES, "service"),
        **dict.fromkeys(SANDBOXES, "sandbox"), **dict.fromkeys(APPS, "application"),
        **dict.fromkeys(TESTING, "test support")}
#: What each kind of component may import besides itself (``None``: anything).
ALLOWED: dict[str, frozenset[str] | None] = {
    "library": LIBRARIES,
    "service": LIBRARIES,
    "sandbox": frozenset({"kmsync_contracts"}),
    "test support": LIBRARIES | SERVICES | SANDBOXES,
    "application": None,
}

#: Today's violations in code other engineers are changing: "importer -> imported". This set must only
#: shrink: the test fails when one of them is gone (remove it here) as well as on any new violation.
KNOWN_VIOLATIONS: frozenset[str] = frozenset()
#: Today's import cycles (the set of their modules), same rule: it may only shrink.
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Arrow:
    importer: str
    imported: str
    line: int
    type_checking: bool = False


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(repo: Path = REPO, roots: Iterable[str] = ROOTS) -> dict[str, Path]:
    """Every module under the roots, by dotted name (a package is its ``__init__``)."""
    modules: dict[str, Path] = {}
    for root in roots:
        base = repo / root
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" not in path.parts:
                modules[module_name(base, path)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it sits under ``if TYPE_CHECKING:``."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, guarded = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, guarded
        for child in ast.iter_child_nodes(node):
            inside = guarded or (isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body)
            stack.append((child, inside))


def _resolve(name: str, known: Mapping[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in (``a.b.C`` → ``a.b``); None when external."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, base]) if base else ".".join(anchor)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def arrows_of(module: str, path: Path, known: Mapping[str, Path]) -> list[Arrow]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: dict[str, Arrow] = {}
    for node, guarded in _imports(tree):
        names = _targets(module, is_package, node)
        # `from a import b`: b is a submodule or a name in a; the first name that resolves is the arrow's head
        resolved = [_resolve(n, known) for n in names]
        heads = {r for r in resolved[:-1] if r} if isinstance(node, ast.ImportFrom) else {r for r in resolved if r}
        if isinstance(node, ast.ImportFrom) and not heads and resolved[-1]:
            heads = {resolved[-1]}
        for head in heads - {module}:
            previous = found.get(head)
            if previous is None or (previous.type_checking and not guarded):
                found[head] = Arrow(module, head, node.lineno, guarded)
    return sorted(found.values(), key=lambda a: (a.line, a.imported))


def import_graph(modules: Mapping[str, Path]) -> list[Arrow]:
    return [arrow for name, path in modules.items() for arrow in arrows_of(name, path, modules)]


def component(module: str) -> str:
    return module.split(".")[0]


def rule_violations(arrows: Iterable[Arrow]) -> dict[str, str]:
    """"importer -> imported" → why it breaks a rule, for every arrow between components that is not allowed."""
    out: dict[str, str] = {}
    for arrow in arrows:
        source, target = component(arrow.importer), component(arrow.imported)
        if source == target:
            continue
        for name in (source, target):
            if name not in KIND:
                out[f"{arrow.importer} -> {arrow.imported}"] = (
                    f"{name} is in no layer: add it to LIBRARIES, SERVICES, SANDBOXES, APPS or TESTING")
        if source not in KIND or target not in KIND:
            continue
        allowed = ALLOWED[KIND[source]]
        if allowed is not None and target not in allowed:
            out[f"{arrow.importer} -> {arrow.imported}"] = (
                f"{arrow.importer} (line {arrow.line}) imports {arrow.imported}: {_a(KIND[source])} may not import "
                f"{_a(KIND[target])} ({target})")
    return out


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def cycles(arrows: Iterable[Arrow]) -> list[list[str]]:
    """The module-level import cycles (strongly connected components of more than one module), each
    given as one closed path through its modules."""
    graph: dict[str, set[str]] = {}
    for arrow in arrows:
        graph.setdefault(arrow.importer, set()).add(arrow.imported)
        graph.setdefault(arrow.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm; the graph is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.append(w)
                if w == v:
                    break
            if len(members) > 1:
                found.append(_closed_path(sorted(members), graph))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _closed_path(members: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest path from the first member back to itself inside the component (breadth first)."""
    start, inside = members[0], set(members)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return [*members, start]


def describe_cycle(path: list[str], arrows: Iterable[Arrow]) -> str:
    lines = {(a.importer, a.imported): a.line for a in arrows}
    steps = [f"{a} (line {lines.get((a, b), '?')}) -> {b}" for a, b in pairwise(path)]
    return "import cycle: " + "; ".join(steps)


# ---------------------------------------------------------------------------------------------- the rules


@cache
def repository_arrows() -> list[Arrow]:
    return import_graph(discover())


def test_the_repository_keeps_its_import_rules() -> None:
    arrows = repository_arrows()
    found = rule_violations(arrows)
    new = {k: v for k, v in found.items() if k not in KNOWN_VIOLATIONS}
    gone = KNOWN_VIOLATIONS - found.keys()
    assert not new, "import rules broken:\n" + "\n".join(sorted(new.values()))
    assert not gone, ("these KNOWN_VIOLATIONS are fixed, remove them from the list in "
                      f"tests/architecture/test_import_rules.py: {sorted(gone)}")


def test_the_repository_has_no_import_cycle() -> None:
    arrows = repository_arrows()
    found = {frozenset(c): c for c in cycles(arrows)}
    new = [c for key, c in found.items() if key not in KNOWN_CYCLES]
    assert not new, "\n".join(describe_cycle(c, arrows) for c in new)
    gone = KNOWN_CYCLES - found.keys()
    assert not gone, f"these KNOWN_CYCLES are broken, remove them from the list: {[sorted(c) for c in gone]}"


def test_every_package_sits_in_a_layer() -> None:
    packages = {component(m) for m in discover()}
    assert packages - KIND.keys() == set(), "packages in no layer: add them to a layer in this test"
    assert packages >= KIND.keys() - TESTING, f"layers name packages that do not exist: {KIND.keys() - packages}"


# ----------------------------------------------------------------------- the checker on graphs made up here


def _graph(tmp_path: Path, files: Mapping[str, str]) -> list[Arrow]:
    for name, text in files.items():
        path = tmp_path / "root" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(discover(tmp_path, ["root"]))


def test_the_checker_reports_a_service_importing_a_sandbox_and_another_service(tmp_path: Path) -> None:
    arrows = _graph(tmp_path, {
        "kmsync_sink/__init__.py": "",
        "kmsync_sink/run.py": "import os\nfrom kmsync_common import clock\n\ndef f():\n    import marketo_sandbox.server\n",
        "kmsync_ingest/__init__.py": "",
        "kmsync_ingest/x.py": "from kmsync_sink.run import f\n",
        "kmsync_common/__init__.py": "", "kmsync_common/clock.py": "",
        "marketo_sandbox/__init__.py": "", "marketo_sandbox/server.py": "",
    })
    found = rule_violations(arrows)
    assert set(found) == {"kmsync_sink.run -> marketo_sandbox.server", "kmsync_ingest.x -> kmsync_sink.run"}
    assert found["kmsync_sink.run -> marketo_sandbox.server"] == (
        "kmsync_sink.run (line 5) imports marketo_sandbox.server: a service may not import a sandbox (marketo_sandbox)")
    assert "a service may not import a service (kmsync_sink)" in found["kmsync_ingest.x -> kmsync_sink.run"]


def test_the_checker_reports_a_sandbox_or_a_library_importing_product_or_test_code(tmp_path: Path) -> None:
    arrows = _graph(tmp_path, {
        "kaltura_sandbox/__init__.py": "from kmsync_contracts import base\nfrom kmsync_common.clock import Clock\n",
        "kmsync_contracts/__init__.py": "", "kmsync_contracts/base.py": "",
        "kmsync_common/__init__.py": "", "kmsync_common/clock.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from kmsync_testing import waiting\n",
        "kmsync_testing/__init__.py": "", "kmsync_testing/waiting.py": "import kaltura_sandbox\nimport kmsync_cli\n",
        "kmsync_cli/__init__.py": "import kmsync_testing.waiting\nimport kmsync_sink\n", "kmsync_sink/__init__.py": "",
    })
    assert rule_violations(arrows) == {
        "kaltura_sandbox -> kmsync_common.clock":
            "kaltura_sandbox (line 2) imports kmsync_common.clock: a sandbox may not import a library (kmsync_common)",
        "kmsync_common.clock -> kmsync_testing.waiting":
            "kmsync_common.clock (line 3) imports kmsync_testing.waiting: a library may not import a test support "
            "(kmsync_testing)",
        "kmsync_testing.waiting -> kmsync_cli":
            "kmsync_testing.waiting (line 2) imports kmsync_cli: a test support may not import an application (kmsync_cli)",
    }


def test_the_checker_finds_a_cycle_through_a_relative_import_inside_a_function(tmp_path: Path) -> None:
    arrows = _graph(tmp_path, {
        "marketo_sandbox/__init__.py": "from .server import Sandbox\n",
        "marketo_sandbox/server.py": "from . import admin\nclass Sandbox: ...\n",
        "marketo_sandbox/admin.py": "def handler():\n    from .server import Sandbox\n",
        "marketo_sandbox/call.py": "from .admin import handler\n",
    })
    found = cycles(arrows)
    assert found == [["marketo_sandbox.admin", "marketo_sandbox.server", "marketo_sandbox.admin"]]
    assert describe_cycle(found[0], arrows) == (
        "import cycle: marketo_sandbox.admin (line 2) -> marketo_sandbox.server; "
        "marketo_sandbox.server (line 1) -> marketo_sandbox.admin")


def test_the_checker_gives_a_longer_cycle_as_one_closed_path(tmp_path: Path) -> None:
    arrows = _graph(tmp_path, {
        "kmsync_common/__init__.py": "", "kmsync_common/a.py": "from kmsync_common import b\n",
        "kmsync_common/b.py": "import kmsync_common.c\n", "kmsync_common/c.py": "from .a import x\nimport kmsync_common.d\n",
        "kmsync_common/d.py": "",
    })
    assert cycles(arrows) == [["kmsync_common.a", "kmsync_common.b", "kmsync_common.c", "kmsync_common.a"]]


def test_the_checker_reports_an_unknown_package(tmp_path: Path) -> None:
    arrows = _graph(tmp_path, {"kmsync_new/__init__.py": "import kmsync_common\n", "kmsync_common/__init__.py": ""})
    assert rule_violations(arrows) == {
        "kmsync_new -> kmsync_common": "kmsync_new is in no layer: add it to LIBRARIES, SERVICES, SANDBOXES, APPS or TESTING"}
