"""The compose services, started as local processes with the compose file's own commands and
KMSYNC_* environment (only the addresses changed: the test broker, free loopback ports), against a
real Kafka broker while Marketo and Kaltura are unreachable. The `topics` command creates the
catalogue (idempotently); each service must pass the probes the manifests use (they never depend on
Marketo or Kaltura), stay live, and expose every metric the alerts and dashboard query."""

from __future__ import annotations

import asyncio
import json
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client.parser import text_string_to_metric_families

from kmsync_cli.processes import ProcessGroup
from kmsync_contracts.topics import ALL_TOPICS
from kmsync_testing.kafka_broker import KafkaBroker

SERVICES = {"ingest": "kmsync_ingest_", "transform": "kmsync_transform_", "sink": "kmsync_sink_"}
SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
          "summary": ("", "_sum", "_count"), "info": ("_info",), "stateset": ("",), "unknown": ("",)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def exposed_series(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SERIES[family.type])
    return names


def queried_metrics(repo: Path) -> set[str]:
    """Metric-looking names in the alerts and the dashboard (their own test checks them precisely)."""
    import re

    text = (repo / "deploy/prometheus/alerts.yml").read_text()
    text += json.dumps(json.loads((repo / "deploy/grafana/dashboards/kmsync.json").read_text()))
    return set(re.findall(r"\bkmsync_[a-z0-9_]+", text))


async def describe_topics(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        configs = {resource[3]: {e[0]: e[1] for e in resource[4]}
                   for response in responses for resource in response.resources}
        return partitions, configs
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def stack(kafka_broker: KafkaBroker, repo: Path, tmp_path_factory: pytest.TempPathFactory,
          checks: Any) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("compose-processes")
    prefix = f"cp{work.name[-6:]}."
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())["services"]
    # Marketo and Kaltura are down: both point at a loopback port nobody listens on.
    dead = f"http://127.0.0.1:{free_port()}"
    tenants = yaml.safe_load((repo / "deploy/compose/tenants.yaml").read_text())
    for instance in tenants["marketo_instances"].values():
        instance["endpoint"] = dead
    for partner in tenants["kaltura_partners"].values():
        partner["service_url"] = partner["user_profile_url"] = dead
    tenants_file = work / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump(tenants))

    # The compose file's Docker secrets (/run/secrets/<name>), as local files with fresh values.
    secrets_dir = work / "secrets"
    secrets_dir.mkdir()
    for secret in yaml.safe_load((repo / "docker-compose.yml").read_text())["secrets"]:
        (secrets_dir / secret).write_text(f"{secret}-{work.name}-local-test-value\n")

    def env_for(name: str, port: int | None) -> dict[str, str]:
        env = {str(k): str(v).replace("/run/secrets/", f"{secrets_dir}/")
               for k, v in compose[name]["environment"].items()}
        env.update(KMSYNC_KAFKA_BOOTSTRAP=kafka_broker.bootstrap, KMSYNC_TOPIC_PREFIX=prefix,
                   KMSYNC_TENANTS_FILE=str(tenants_file), KMSYNC_HTTP_HOST="127.0.0.1")
        if port is not None:
            env["KMSYNC_HTTP_PORT"] = str(port)
        return env

    def local_argv(command: list[str] | str) -> list[str]:
        argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        if argv[0] == "python":
            return [sys.executable, str(checks.TOPICS_SCRIPT), *argv[2:]]
        return [str(checks.VENV_BIN / argv[0]), *argv[1:]]

    def create_topics() -> subprocess.CompletedProcess[str]:
        return subprocess.run(local_argv(compose["topics"]["command"]),
                              env={**env_for("topics", None), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=120, check=False)

    topics = create_topics()
    assert topics.returncode == 0, topics.stderr
    assert f"{len(ALL_TOPICS)} created, 0 already present" in topics.stdout
    group = ProcessGroup(work / "logs")
    ports = {name: free_port() for name in SERVICES}
    try:
        children = {name: group.start(name, local_argv(compose[name]["command"]), env_for(name, ports[name]))
                    for name in SERVICES}
        for name, child in children.items():
            group.wait_http_ok(child, f"http://127.0.0.1:{ports[name]}/healthz", timeout=120)
        again = create_topics()
        assert again.returncode == 0, again.stderr
        assert f"0 created, {len(ALL_TOPICS)} already present" in again.stdout, "a second run changes nothing"
        yield {**ports, "prefix": prefix}
        assert group.dead() == [], [f"{c.name}: {c.log_tail()}" for c in group.dead()]
    finally:
        group.stop_all()


def probe_paths(repo: Path, name: str) -> dict[str, str]:
    """The HTTP paths the Kubernetes probes and the compose healthcheck use for `name`."""
    deployment = yaml.safe_load((repo / f"deploy/k8s/base/{name}.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    paths = {kind: container[kind]["httpGet"]["path"]
             for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in container}
    healthcheck = " ".join(yaml.safe_load((repo / "docker-compose.yml").read_text())
                           ["services"][name]["healthcheck"]["test"])
    paths["compose healthcheck"] = "/" + healthcheck.split("/", 3)[3].split("'")[0]
    return paths


def poll_status(url: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    status = 0
    while time.monotonic() < deadline:
        status = http_get(url)[0]
        if status in (200, 404):  # 404: the route does not exist, waiting will not add it
            return status
        time.sleep(0.5)  # polling a child process's endpoint with a deadline
    return status


def test_topics_command_created_the_catalogue(stack: dict[str, Any], kafka_broker: KafkaBroker) -> None:
    names = [stack["prefix"] + spec.name for spec in ALL_TOPICS]
    partitions, configs = asyncio.run(describe_topics(kafka_broker.bootstrap, names))
    for spec in ALL_TOPICS:
        name = stack["prefix"] + spec.name
        assert partitions[name] == spec.partitions, name
        assert configs[name]["cleanup.policy"] == spec.cleanup_policy, name
        assert configs[name]["retention.ms"] == str(spec.retention_ms), name


@pytest.mark.parametrize("name", list(SERVICES))
def test_probes_pass_while_marketo_and_kaltura_are_down(name: str, stack: dict[str, Any], repo: Path) -> None:
    paths = probe_paths(repo, name)
    assert paths["readinessProbe"] and paths["livenessProbe"]
    for kind, path in paths.items():
        status = poll_status(f"http://127.0.0.1:{stack[name]}{path}", 60)
        assert status == 200, f"{name}: the {kind} on {path} answered {status}"


@pytest.mark.parametrize("name", list(SERVICES))
def test_exposes_every_metric_the_alerts_and_dashboard_query(name: str, stack: dict[str, Any], repo: Path) -> None:
    status, body = http_get(f"http://127.0.0.1:{stack[name]}/metrics")
    assert status == 200
    exposed = exposed_series(body.decode())
    wanted = {m for m in queried_metrics(repo) if m.startswith(SERVICES[name])}
    assert wanted, f"the alerts and dashboard query no {SERVICES[name]}* metric"
    assert sorted(wanted - exposed) == []
