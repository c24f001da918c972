"""Every metric the alert rules and the Grafana dashboard query is defined in the code: names are
read from the prometheus_client Counter/Gauge/Histogram/Summary/Info/Enum definitions under
services/ and libs/, with the series names prometheus_client exposes for each type."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

#: Series Prometheus itself makes for every target.
BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_count", "_sum", "_created"),
    "Summary": ("", "_count", "_sum", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                "unless", "offset", "inf", "nan", "le"}


def _str(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def defined_in(path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """(type, full name, label names) of every prometheus_client metric constructed in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    local: dict[str, str] = {}  # local name -> prometheus_client type
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prometheus_client"):
            local.update({a.asname or a.name: a.name for a in node.names if a.name in SUFFIXES})
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name == "prometheus_client")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in local:
            kind = local[func.id]
        elif (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
              and func.value.id in modules and func.attr in SUFFIXES):
            kind = func.attr
        else:
            continue
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        name = _str(node.args[0] if node.args else kwargs.get("name"))
        if name is None:
            raise AssertionError(f"{path}:{node.lineno}: metric name is not a string literal; extend this test")
        parts = [_str(kwargs.get("namespace")) or "", _str(kwargs.get("subsystem")) or "", name]
        full = "_".join(p for p in parts if p)
        labels_node = node.args[2] if len(node.args) > 2 else kwargs.get("labelnames")
        labels = [e.value for e in getattr(labels_node, "elts", []) if isinstance(e, ast.Constant)]
        yield kind, full, [str(label) for label in labels]


def exposed_names(kind: str, name: str) -> set[str]:
    if kind == "Counter":
        name = name.removesuffix("_total")
    if kind == "Info":
        name = name.removesuffix("_info")
    return {name + suffix for suffix in SUFFIXES[kind]}


def code_metrics(repo: Path) -> dict[str, str]:
    """Exposed series name -> the file that defines it."""
    return {series: path for series, (path, _) in code_series(repo).items()}


def code_series(repo: Path) -> dict[str, tuple[str, set[str]]]:
    """Exposed series name -> (defining file, its label names, `le` included for buckets)."""
    found: dict[str, tuple[str, set[str]]] = {}
    for path in sorted([*repo.glob("services/**/*.py"), *repo.glob("libs/**/*.py")]):
        if "prometheus_client" not in path.read_text():
            continue
        for kind, name, labels in defined_in(path):
            for series in exposed_names(kind, name):
                extra = {"le"} if series.endswith("_bucket") else set()
                found[series] = (str(path.relative_to(repo)), set(labels) | extra)
    return found


#: Labels Prometheus attaches to every scraped series (the compose config adds `service`).
TARGET_LABELS = {"job", "instance", "service"}


def promql_label_names(expr: str) -> set[str]:
    """Label names an expression matches on or aggregates by."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels.update(w.strip() for w in group.split(",") if w.strip())
    return labels


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (functions, keywords, labels, durations removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)        # strings
    text = re.sub(r"\{[^}]*\}", " ", text)                                     # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)                                    # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)                                   # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def alert_exprs(repo: Path) -> list[str]:
    groups = yaml.safe_load((repo / "deploy/prometheus/alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs(repo: Path) -> list[str]:
    exprs: list[str] = []
    for path in (repo / "deploy/grafana/dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())

        def walk(panels: list[dict[str, object]]) -> None:
            for panel in panels:
                exprs.extend(str(t["expr"]) for t in panel.get("targets", []) if isinstance(t, dict))  # type: ignore[union-attr]
                walk(panel.get("panels", []))  # type: ignore[arg-type]

        walk(dashboard["panels"])
        for variable in dashboard["templating"]["list"]:
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            exprs.extend(re.findall(r"label_values\(\s*([^,)]+)", text))
    return exprs


def test_the_promql_reader_finds_metrics_and_nothing_else() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, instance) (rate(a_seconds_bucket{code="606", x=~"$v"}[5m])))'
            ' / on (instance) group_left b_total > 0.9 or max without (job) (c) unless d offset 5m')
    assert promql_metric_names(expr) == {"a_seconds_bucket", "b_total", "c", "d"}


def test_the_code_reader_exposes_prometheus_client_series_names(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from prometheus_client import Counter, Histogram as H\nimport prometheus_client as pc\n"
        "from collections import Counter as Tally\n"
        "a = Counter('x_calls', 'd', ['instance'])\nb = H('lat_seconds', 'd')\n"
        "c = pc.Gauge('g', 'd', namespace='ns')\nd = Counter('y_total', 'd')\n"
    )
    names = {n for kind, name, _ in defined_in(source) for n in exposed_names(kind, name)}
    assert names == {"x_calls_total", "x_calls_created", "lat_seconds_bucket", "lat_seconds_count",
                     "lat_seconds_sum", "lat_seconds_created", "ns_g", "y_total", "y_created"}


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_queried_metric_is_defined_in_the_code(source: str, repo: Path) -> None:
    exprs = alert_exprs(repo) if source == "alerts" else dashboard_exprs(repo)
    assert exprs, f"no queries found in the {source}"
    used = set().union(*(promql_metric_names(e) for e in exprs))
    assert used, f"no metric names found in the {source}"
    defined = code_metrics(repo)
    missing = sorted(used - set(defined) - BUILTIN)
    assert missing == [], f"{source} query metrics no code defines: {missing}"


def test_the_label_reader_finds_matchers_and_groupings() -> None:
    expr = 'sum by (le, instance) (rate(a_bucket{code="606", x=~"$v"}[5m])) / on (instance) b{budget="daily"}'
    assert promql_label_names(expr) == {"le", "instance", "code", "x", "budget"}


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_queried_label_exists_on_a_queried_metric(source: str, repo: Path) -> None:
    """A renamed label (say instance -> munchkin_id) would silently empty a panel or an alert."""
    exprs = alert_exprs(repo) if source == "alerts" else dashboard_exprs(repo)
    series = code_series(repo)
    problems = []
    for expr in exprs:
        metrics = promql_metric_names(expr) - BUILTIN
        if not metrics:
            continue
        available = set().union(*(series[m][1] for m in metrics if m in series)) | TARGET_LABELS
        unknown = promql_label_names(expr) - available
        if unknown:
            problems.append(f"{sorted(unknown)} not labels of {sorted(metrics)} in: {expr.strip()[:160]}")
    assert problems == []


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_per_munchkin_queries_never_group_by_the_target_instance(source: str, repo: Path) -> None:
    """Series of one Marketo instance carry `munchkin_id`; `instance` is the scrape target (a pod's
    address), so a query on them that matches or groups by `instance` splits or merges by pod."""
    exprs = alert_exprs(repo) if source == "alerts" else dashboard_exprs(repo)
    series = code_series(repo)
    per_munchkin = {name for name, (_, labels) in series.items() if "munchkin_id" in labels}
    assert per_munchkin, "no series carries munchkin_id"
    wrong = [e.strip()[:160] for e in exprs
             if promql_metric_names(e) & per_munchkin and "instance" in promql_label_names(e)]
    assert wrong == []
