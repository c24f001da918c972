"""Alert rules and the compose Prometheus config pass promtool, the rules' unit tests pass
(promtool test rules), and every alert is documented with a runbook section in deploy/README.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROM = Path("deploy/prometheus")


def promtool_run(promtool: str, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=repo, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def alerts(repo: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load((repo / PROM / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules(promtool: str, repo: Path, alerts: list[dict[str, Any]]) -> None:
    result = promtool_run(promtool, repo, "check", "rules", str(PROM / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(promtool: str, repo: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(kmsync_x[5m]\n")
    assert promtool_run(promtool, repo, "check", "rules", str(broken)).returncode != 0


def test_alert_unit_tests_pass(promtool: str, repo: Path) -> None:
    result = promtool_run(promtool, repo, "test", "rules", str(PROM / "tests/alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_cover_at_least_two_alerts_firing(repo: Path, alerts: list[dict[str, Any]]) -> None:
    suite = yaml.safe_load((repo / PROM / "tests/alerts.test.yml").read_text())
    assert suite["rule_files"] == ["../alerts.yml"]
    fired = {case["alertname"] for test in suite["tests"] for case in test.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert fired <= {a["alert"] for a in alerts}
    assert len(fired) >= 2, fired


def test_compose_prometheus_config_is_valid(promtool: str, repo: Path) -> None:
    result = promtool_run(promtool, repo, "check", "config", str(PROM / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_severity_summary_and_a_runbook_section(repo: Path, alerts: list[dict[str, Any]]) -> None:
    readme = (repo / "deploy/README.md").read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", readme, flags=re.M)}
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), "alert names are unique"
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        runbook = alert["annotations"]["runbook"]
        assert runbook == f"deploy/README.md#{alert['alert'].lower()}"
        assert runbook.split("#", 1)[1] in anchors, f"deploy/README.md has no section {alert['alert']}"


def test_promtool_comes_from_the_cache_not_a_system_install(promtool: str, repo: Path) -> None:
    assert Path(promtool).is_relative_to(repo / ".cache" / "prometheus"), promtool
    makefile = (repo / "Makefile").read_text()
    assert "apt-get install" not in makefile, "make must not install system packages (issue #20 item 6)"
    assert "tests/deploy/fetch_debian_package.sh prometheus $(PROMETHEUS_ROOT)" in makefile
    assert re.search(r"^export PATH := \$\(abspath \$\(PROMETHEUS_ROOT\)\)/usr/bin:", makefile, flags=re.M)
    assert re.search(r"^test: .*\btools\b", makefile, flags=re.M)


def test_prometheus_and_promtool_unpack_without_root(repo: Path) -> None:
    """fetch_debian_package.sh as an unprivileged user (nobody, when the tests run as root)."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kmsync-fetch-") as scratch:
        Path(scratch).chmod(0o777)  # pytest's tmp_path sits under a directory only its user can enter
        dest = Path(scratch) / "prom"
        argv = ["bash", str(repo / "tests/deploy/fetch_debian_package.sh"), "prometheus", str(dest)]
        if os.geteuid() == 0:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, result.stderr
        for command in ("prometheus", "promtool"):
            binary = dest / "usr" / "bin" / command
            if os.geteuid() == 0:
                assert binary.stat().st_uid == 65534, "unpacked by the unprivileged user"
            version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                                     check=False)
            assert version.returncode == 0 and "version" in version.stdout + version.stderr, command
