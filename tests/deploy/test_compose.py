"""docker-compose.yml, checked statically (no Docker engine here): it parses, every command is a real
console script / kmsync subcommand with real options, every KMSYNC_* variable is a field of the
service's settings model, ports agree everywhere, and the files it mounts exist and validate."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kaltura_sandbox.config import load_scenario_file
from kmsync_config import load_tenants

KMSYNC_SERVICES = {"ingest": "ingest", "transform": "transform", "sink": "sink"}
EXPECTED = {"kafka", "topics", "marketo-sandbox", "kaltura-sandbox", "ingest", "transform", "sink",
            "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose(repo: Path) -> dict[str, Any]:
    data = yaml.safe_load((repo / "docker-compose.yml").read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "compose needs a services mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def argv_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, "every kmsync container names its command"
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def secret_paths(service: dict[str, Any]) -> set[str]:
    """Where the service's Docker secrets appear in its container (/run/secrets/<target>)."""
    paths = set()
    for entry in service.get("secrets", []):
        target = entry if isinstance(entry, str) else entry.get("target", entry["source"])
        paths.add(target if target.startswith("/") else f"/run/secrets/{target}")
    return paths


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{argv} has no {name}"
    return argv[argv.index(name) + 1]


def netns_owner(name: str, services: dict[str, dict[str, Any]]) -> str:
    """The service whose network namespace `name` runs in (itself, or network_mode: service:X)."""
    mode = str(services[name].get("network_mode", ""))
    return mode.removeprefix("service:") if mode.startswith("service:") else name


def published_container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        text = str(entry["target"]) if isinstance(entry, dict) else str(entry).split("/")[0]
        ports.add(int(text.rsplit(":", 1)[-1]))
    return ports


def healthcheck_port(service: dict[str, Any]) -> int:
    test = " ".join(str(t) for t in service["healthcheck"]["test"])
    match = re.search(r"127\.0\.0\.1['\"]?[:,]\s*(\d+)", test)
    assert match, f"healthcheck {test!r} names no 127.0.0.1 port"
    return int(match.group(1))


def scrape_targets(repo: Path) -> dict[str, str]:
    config = yaml.safe_load((repo / "deploy/prometheus/prometheus.yml").read_text())
    targets = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                targets[static.get("labels", {}).get("service", job["job_name"])] = target
    return targets


def compose_config(docker_compose: str, repo: Path, file: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config -q`: schema validation, anchors, network_mode and depends_on references."""
    return subprocess.run([docker_compose, "--project-directory", str(repo), "-f", str(file), "config", "-q"],
                          cwd=repo, capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(repo / ".cache")})


def test_compose_file_passes_docker_compose_config(docker_compose: str, repo: Path) -> None:
    result = compose_config(docker_compose, repo, repo / "docker-compose.yml")
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_rejects_an_invalid_file(docker_compose: str, repo: Path, tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((repo / "docker-compose.yml").read_text().replace(
        "condition: service_completed_successfully", "condition: service_finished"))
    result = compose_config(docker_compose, repo, broken)
    assert result.returncode != 0 and "service_finished" in result.stderr


def test_compose_has_every_part_of_the_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == EXPECTED


def test_kafka_is_the_official_image_in_kraft_single_node_mode(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.4.0"
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = dict(re.findall(r"(\w+)://[^:,]*:(\d+)", env["KAFKA_LISTENERS"]))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    node_id, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")
    assert node_id == env["KAFKA_NODE_ID"], "the only voter is this node"
    assert voter == f"kafka:{listeners[controller]}", "the quorum voter is this node's controller listener"
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols), "every listener has a security protocol"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == "1", f"{key} must be 1 on a single node"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from the catalogue only"
    # Every client's bootstrap is an advertised listener of this broker.
    advertised = set(re.findall(r"\w+://([^,]+)", env["KAFKA_ADVERTISED_LISTENERS"]))
    for name, service in services.items():
        bootstrap = env_of(service).get("KMSYNC_KAFKA_BOOTSTRAP")
        if bootstrap is not None:
            assert bootstrap in advertised, f"{name}: KMSYNC_KAFKA_BOOTSTRAP={bootstrap} is not advertised"


@pytest.mark.parametrize("name", ["topics", "marketo-sandbox", "kaltura-sandbox", "ingest", "transform", "sink"])
def test_command_exists_in_the_package(name: str, services: dict[str, dict[str, Any]], checks: ModuleType) -> None:
    service = services[name]
    assert service["image"] == "kmsync:local"
    assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert checks.command_problems(argv_of(service)) == []


@pytest.mark.parametrize("name", ["topics", "ingest", "transform", "sink"])
def test_kmsync_environment_matches_the_settings_model(
    name: str, services: dict[str, dict[str, Any]], checks: ModuleType
) -> None:
    cls = checks.settings_class(argv_of(services[name]))
    assert cls is not None, f"{name}: no settings model known for {argv_of(services[name])}"
    env = env_of(services[name])
    assert any(k.startswith("KMSYNC_") for k in env)
    assert checks.env_field_problems(cls, env, secret_paths(services[name])) == []


@pytest.mark.parametrize("name", ["ingest", "transform", "sink"])
def test_http_port_agrees_with_healthcheck_publishing_and_scraping(
    name: str, services: dict[str, dict[str, Any]], repo: Path
) -> None:
    port = int(env_of(services[name])["KMSYNC_HTTP_PORT"])
    assert healthcheck_port(services[name]) == port
    assert "/healthz" in " ".join(services[name]["healthcheck"]["test"])
    owner = netns_owner(name, services)
    assert port in published_container_ports(services[owner]), f"{name}'s port {port} is not published"
    assert scrape_targets(repo)[KMSYNC_SERVICES[name]] == f"{owner}:{port}", "Prometheus scrapes where it listens"


def test_no_two_processes_in_one_network_namespace_share_a_port(services: dict[str, dict[str, Any]]) -> None:
    listening: dict[tuple[str, int], str] = {}
    for name, service in services.items():
        env = env_of(service)
        ports: list[int] = []
        if "KMSYNC_HTTP_PORT" in env:
            ports.append(int(env["KMSYNC_HTTP_PORT"]))
        if "command" in service and "--port" in argv_of(service):
            ports.append(int(option(argv_of(service), "--port")))
        for port in ports:
            key = (netns_owner(name, services), port)
            assert key not in listening, f"{name} and {listening[key]} both listen on {port}"
            listening[key] = name


def test_sandboxes_listen_where_the_tenants_file_points(services: dict[str, dict[str, Any]], repo: Path) -> None:
    marketo_port = int(option(argv_of(services["marketo-sandbox"]), "--port"))
    kaltura_port = int(option(argv_of(services["kaltura-sandbox"]), "--port"))
    assert option(argv_of(services["marketo-sandbox"]), "--preset") == "kaltura"
    for name, port in (("marketo-sandbox", marketo_port), ("kaltura-sandbox", kaltura_port)):
        assert healthcheck_port(services[name]) == port
        assert port in published_container_ports(services[name])
    tenants = load_tenants(repo / "deploy/compose/tenants.yaml", check_secrets=False)
    for instance in tenants.marketo_instances.values():
        url = urlsplit(instance.endpoint)
        # The sink reaches the sandbox on loopback because it shares the sandbox's network namespace.
        assert netns_owner("sink", services) == "marketo-sandbox"
        assert (url.hostname, url.port) == ("127.0.0.1", marketo_port)
    for partner in tenants.kaltura_partners.values():
        # Ingest reaches the Kaltura sandbox on loopback the same way (plain http only there).
        assert netns_owner("ingest", services) == "kaltura-sandbox"
        for base in (partner.service_url, partner.user_profile_url):
            assert (urlsplit(base).hostname, urlsplit(base).port) == ("127.0.0.1", kaltura_port)
        # The client posts {user_profile_url}/user-profile/list; the sandbox serves it under /api/v1.
        assert urlsplit(partner.user_profile_url).path.rstrip("/") == "/api/v1"


@pytest.mark.parametrize("name", ["ingest", "transform", "sink"])
def test_tenants_file_is_mounted_valid_and_its_secrets_resolve(
    name: str, services: dict[str, dict[str, Any]], repo: Path, checks: ModuleType
) -> None:
    service = services[name]
    env = env_of(service)
    mounts = {target: source for source, target, *_ in (str(v).split(":") for v in service["volumes"])}
    source = mounts.get(env["KMSYNC_TENANTS_FILE"])
    assert source is not None, f"{name}: nothing is mounted at KMSYNC_TENANTS_FILE={env['KMSYNC_TENANTS_FILE']}"
    document = yaml.safe_load((repo / source).read_text())
    assert checks.tenants_problems(document, env, {}) == []


def test_kaltura_scenario_matches_the_tenants_file(services: dict[str, dict[str, Any]], repo: Path) -> None:
    argv = argv_of(services["kaltura-sandbox"])
    mounts = {target: source for source, target, *_ in
              (str(v).split(":") for v in services["kaltura-sandbox"]["volumes"])}
    scenario = load_scenario_file(repo / mounts[option(argv, "--scenario")])
    tenants = load_tenants(repo / "deploy/compose/tenants.yaml", check_secrets=False)
    event = tenants.event(scenario.partner_id, scenario.virtual_event_id)
    assert event is not None, "the sandbox plays an event the tenants file routes"
    notify = urlsplit(option(argv, "--notify-url"))
    # Ingest shares the sandbox's network namespace: the sandbox posts to it on loopback.
    assert netns_owner("ingest", services) == "kaltura-sandbox"
    assert (notify.hostname, notify.port) == ("127.0.0.1", int(env_of(services["ingest"])["KMSYNC_HTTP_PORT"]))
    assert notify.path.rstrip("/").endswith(f"/{scenario.partner_id}"), "notifications name the partner"
    secret_ref = tenants.kaltura_partners[scenario.partner_id].admin_secret
    assert secret_ref.env is not None
    assert env_of(services["ingest"])[secret_ref.env] == scenario.admin_secret, "ingest signs KS with the sandbox's secret"


def test_every_bind_mount_exists(services: dict[str, dict[str, Any]], repo: Path) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (repo / source).exists(), f"{name} mounts missing {source}"


def test_services_start_after_the_topics_exist(services: dict[str, dict[str, Any]]) -> None:
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in KMSYNC_SERVICES:
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_prometheus_and_grafana_are_wired(services: dict[str, dict[str, Any]], repo: Path) -> None:
    prom_mounts = {t: s for s, t, *_ in (str(v).split(":") for v in services["prometheus"]["volumes"])}
    config_path = next(a.split("=", 1)[1] for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    config = yaml.safe_load((repo / prom_mounts[config_path]).read_text())
    for rule_file in config["rule_files"]:
        in_container = str(Path(config_path).parent / rule_file)
        assert in_container in prom_mounts, f"rule file {rule_file} is not mounted next to the config"
        assert (repo / prom_mounts[in_container]).exists()
    graf_mounts = {t: s for s, t, *_ in (str(v).split(":") for v in services["grafana"]["volumes"])}
    provisioning = repo / graf_mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"][0]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port in published_container_ports(services["prometheus"])
    provider = yaml.safe_load((provisioning / "dashboards/kmsync.yml").read_text())["providers"][0]
    dashboards = repo / graf_mounts[provider["options"]["path"]]
    assert sorted(p.name for p in dashboards.glob("*.json")) == ["kmsync.json"]
    home = env_of(services["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/kmsync.json"


def test_the_sink_is_given_its_longest_drain_before_compose_kills_it(
    services: dict[str, dict[str, Any]], checks: ModuleType
) -> None:
    """docker compose stop/down sends SIGTERM, then SIGKILL after stop_grace_period (10 s unless set): the sink's
    drain, and a lead call held in its replay wait, must end before it (services/kmsync_sink/README.md)."""
    sink = services["sink"]
    grace = str(sink.get("stop_grace_period", "10s"))
    assert grace.endswith("s") and grace[:-1].isdigit(), f"stop_grace_period {grace!r}: write whole seconds"
    assert int(grace[:-1]) > checks.longest_sink_drain(env_of(sink))
