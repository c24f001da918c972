"""Every metric a service exports is in the metrics table of that service's README, with each of its labels.

The metrics are found the way tests/deploy/test_metric_names.py finds them (the prometheus_client constructors
under services/<name>/, read with `ast`); a README documents one in a table row (a line starting with `|`)
that holds its exposed name in backticks (a Counter as `<name>_total`) and names every label it has."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _metric_names_module() -> ModuleType:
    path = ROOT / "tests" / "deploy" / "test_metric_names.py"
    spec = importlib.util.spec_from_file_location("_kmsync_deploy_metric_names", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented_name(kind: str, name: str) -> str:
    """The name a README lists: what /metrics shows without histogram or _created suffixes."""
    return name.removesuffix("_total") + "_total" if kind == "Counter" else name


def exported(service: Path) -> list[tuple[str, str, list[str]]]:
    """(file, documented name, labels) of every metric the service's code defines."""
    defined_in = _metric_names_module().defined_in
    found = []
    for path in sorted(service.rglob("*.py")):
        if "prometheus_client" in path.read_text(encoding="utf-8"):
            found += [(str(path.relative_to(ROOT)), documented_name(kind, name), labels)
                      for kind, name, labels in defined_in(path)]
    return found


def undocumented(readme_text: str, metrics: list[tuple[str, str, list[str]]]) -> list[str]:
    rows = [line for line in readme_text.splitlines() if line.startswith("|")]
    problems = []
    for where, name, labels in metrics:
        mine = [row for row in rows if re.search(rf"`{re.escape(name)}`", row)]
        if not mine:
            problems.append(f"{name} ({where}) is in no metrics table row")
            continue
        missing = [label for label in labels if not any(re.search(rf"\b{label}\b", row) for row in mine)]
        if missing:
            problems.append(f"{name} ({where}): its row does not name the label(s) {', '.join(missing)}")
    return problems


def test_the_check_reads_rows_names_and_labels() -> None:
    readme = "| metric | labels |\n|---|---|\n| `kmsync_x_calls_total` | munchkin_id, code |\n`kmsync_x_lag` text\n"
    metrics = [("a.py", "kmsync_x_calls_total", ["munchkin_id", "code", "lane"]), ("a.py", "kmsync_x_lag", [])]
    assert undocumented(readme, metrics) == [
        "kmsync_x_calls_total (a.py): its row does not name the label(s) lane",
        "kmsync_x_lag (a.py) is in no metrics table row",
    ]
    assert documented_name("Counter", "kmsync_a_total") == documented_name("Counter", "kmsync_a") == "kmsync_a_total"


def test_every_exported_metric_is_in_its_service_readme() -> None:
    services = sorted(p for p in (ROOT / "services").iterdir() if (p / "__init__.py").is_file())
    problems: list[str] = []
    checked = 0
    for service in services:
        metrics = exported(service)
        checked += len(metrics)
        readme = service / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        problems += [f"{readme.relative_to(ROOT)}: {p}" for p in undocumented(text, metrics)]
    assert checked > 30, f"only {checked} metrics found: the scan no longer matches how services define them"
    assert not problems, "metrics missing from the service READMEs:\n" + "\n".join(problems)
