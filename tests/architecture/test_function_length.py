"""No function or method in libs/, services/, apps/ or tests/support/ is longer than 60 lines.

A function's length is its lines from ``def`` (decorators not counted) to its last line, nested functions
included. Declarative tables do not count: a function whose body, after an optional docstring, is a single
``return`` of a dict, list, tuple or set display (a table written as code, not steps).

``KNOWN_LONG`` lists today's offenders ("path:qualname": lines) while they are being split; it may only
shrink: the test fails when a listed function grows, disappears or is 60 lines or fewer (remove it then).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("libs", "services", "apps", "tests/support")
LIMIT = 60

KNOWN_LONG: dict[str, int] = {
}

_Function = ast.FunctionDef | ast.AsyncFunctionDef


def is_declarative_table(fn: _Function) -> bool:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(
            body[0].value.value, str):
        body = body[1:]
    return (len(body) == 1 and isinstance(body[0], ast.Return)
            and isinstance(body[0].value, ast.Dict | ast.List | ast.Tuple | ast.Set))


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, _Function]]:
    """Every function and method with its qualified name (``Class.method``, ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, _Function):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def lengths(source: str, filename: str = "<source>") -> dict[str, int]:
    """qualname → lines, for every function of a module that is not a declarative table."""
    out: dict[str, int] = {}
    for name, fn in functions(ast.parse(source, filename=filename)):
        if not is_declarative_table(fn):
            out[name] = (fn.end_lineno or fn.lineno) - fn.lineno + 1
    return out


def long_functions(repo: Path = REPO, roots: Iterable[str] = ROOTS, limit: int = LIMIT) -> dict[str, int]:
    found: dict[str, int] = {}
    for root in roots:
        for path in sorted((repo / root).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            for name, lines in lengths(path.read_text(), rel).items():
                if lines > limit:
                    found[f"{rel}:{name}"] = lines
    return found


def verdict(found: dict[str, int], known: dict[str, int], limit: int = LIMIT) -> list[str]:
    """Every way `found` breaks the rule or `known` is out of date, one message each."""
    problems = []
    for key, lines in sorted(found.items()):
        if key not in known:
            problems.append(f"{key} is {lines} lines (limit {limit}): split it into named steps")
        elif lines > known[key]:
            problems.append(f"{key} grew to {lines} lines (KNOWN_LONG allows {known[key]}, and may only shrink)")
        elif lines < known[key]:
            problems.append(f"{key} shrank to {lines} lines: lower its KNOWN_LONG entry from {known[key]} to {lines}")
    for key in sorted(known.keys() - found.keys()):
        problems.append(f"{key} is gone or now within {limit} lines: remove it from KNOWN_LONG")
    return problems


def test_no_function_is_longer_than_the_limit() -> None:
    problems = verdict(long_functions(), KNOWN_LONG)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------ the checker on code made up here


def _function(name: str, body_lines: int, *, indent: str = "") -> str:
    return f"{indent}def {name}() -> None:\n" + "".join(f"{indent}    x = {i}\n" for i in range(body_lines))


def test_lengths_count_methods_and_nested_functions_and_skip_tables() -> None:
    table = "def table():\n    '''A table.'''\n    return {\n" + "".join(f"        {i}: {i},\n" for i in range(70)) + "    }\n"
    source = ("class Worker:\n" + _function("run", 61, indent="    ") + "\n"
              + "async def outer():\n" + _function("inner", 3, indent="    ") + table)
    assert lengths(source) == {"Worker.run": 62, "outer": 5, "outer.inner": 4}


def test_a_long_function_is_reported_and_the_allowlist_only_shrinks(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "m.py").write_text(_function("long", 70) + _function("short", 5) + _function("edge", 60))
    found = long_functions(tmp_path, ["libs"])
    assert found == {"libs/m.py:long": 71, "libs/m.py:edge": 61}
    assert verdict(found, {}) == [
        "libs/m.py:edge is 61 lines (limit 60): split it into named steps",
        "libs/m.py:long is 71 lines (limit 60): split it into named steps",
    ]
    assert verdict(found, {"libs/m.py:long": 71, "libs/m.py:edge": 61}) == []
    assert verdict(found, {"libs/m.py:long": 70, "libs/m.py:edge": 62, "libs/m.py:gone": 80}) == [
        "libs/m.py:edge shrank to 61 lines: lower its KNOWN_LONG entry from 62 to 61",
        "libs/m.py:long grew to 71 lines (KNOWN_LONG allows 70, and may only shrink)",
        "libs/m.py:gone is gone or now within 60 lines: remove it from KNOWN_LONG",
    ]
