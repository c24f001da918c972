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


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    """Grafana would shove an overlapping panel elsewhere; a panel inserted in the middle must move the rest."""
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_consumer_lag_panel_marks_the_alert_threshold(repo: Path, dashboard: dict[str, Any]) -> None:
    """Transform's lag is on the dashboard, with the KmsyncTransformLagging threshold drawn on it."""
    rules = yaml.safe_load((repo / "deploy/prometheus/alerts.yml").read_text())["groups"]
    [alert] = [r for g in rules for r in g["rules"] if r.get("alert") == "KmsyncTransformLagging"]
    threshold = float(alert["expr"].rsplit(">", 1)[1])
    [panel] = [p for p in panels(dashboard)
               if any("kmsync_transform_consumer_lag_records" in t["expr"] for t in p.get("targets", []))]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps if s["value"] is not None] == [threshold]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


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
    assert "by (lane, marketo_endpoint, code)" in exprs, "calls by lane (live/backfill) and Marketo result code"
    assert "histogram_quantile" in exprs, "latency quantiles"
    assert 'budget="daily"' in exprs, "daily budget per instance"
    assert "max by (munchkin_id)" in exprs, "budget per Marketo instance, not per scraped pod"
    assert "dead" in exprs, "dead letters"


def test_provisioning_points_at_the_dashboard_folder(repo: Path) -> None:
    provider = yaml.safe_load((repo / "deploy/grafana/provisioning/dashboards/kmsync.yml").read_text())
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"] == "/var/lib/grafana/dashboards"
    datasources = yaml.safe_load((repo / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
