"""The Grafana dashboard is a well-formed, provisionable dashboard that covers what issue 8 asks
for (throughput, latency, budget per instance, errors by code, dead letters), and every query
goes through the dashboard's data source variable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture(scope="module")
def dashboard(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((repo / "deploy/grafana/dashboards/kmsync.json").read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_dashboard_identity_and_layout(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "kmsync-overview" and dashboard["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]


def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_covers_the_required_views(dashboard: dict[str, Any]) -> None:
    rows = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert {"Throughput", "Latency", "Budget per Marketo instance", "Errors and dead letters"} <= rows
    exprs = " ".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))
    assert "by (endpoint, code)" in exprs, "errors by Marketo result code"
    assert "histogram_quantile" in exprs, "latency quantiles"
    assert 'budget="daily"' in exprs, "daily budget per instance"
    assert "dead" in exprs, "dead letters"


def test_provisioning_points_at_the_dashboard_folder(repo: Path) -> None:
    provider = yaml.safe_load((repo / "deploy/grafana/provisioning/dashboards/kmsync.yml").read_text())
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"] == "/var/lib/grafana/dashboards"
    datasources = yaml.safe_load((repo / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
