"""deploy/k8s rendered with kustomize (base and production overlay) and validated against the
Kubernetes JSON schemas; the KEDA ScaledObject (a CRD the schemas do not cover) and the pod specs
are checked against the code: commands, KMSYNC_* settings, probes, ports, tenants and secrets."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kmsync_contracts.topics import MARKETO_OPS
from kmsync_sink.settings import SinkSettings

Resource = dict[str, Any]
#: Kubernetes version the rendered manifests must be valid for (schemas bundled by kubernetes-validate).
KUBERNETES_VERSION = "1.31.0"
OVERLAYS = ["base", "overlays/production", "overlays/production-prometheus-operator"]
#: Kinds the Kubernetes schemas do not cover; ServiceMonitors are checked by crdcheck instead.
CRDS = {("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "ServiceMonitor")}
SERVICES = ["ingest", "transform", "sink"]


@pytest.fixture(scope="module")
def rendered(repo: Path, kustomize_build: Callable[[Path], list[Resource]]) -> dict[str, list[Resource]]:
    return {name: kustomize_build(repo / "deploy/k8s" / name) for name in OVERLAYS}


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def configmap_by_prefix(resources: list[Resource], prefix: str) -> Resource:
    """A generated ConfigMap, whose name carries a content hash suffix."""
    found = [r for r in of_kind(resources, "ConfigMap") if r["metadata"]["name"].startswith(prefix + "-")]
    assert len(found) == 1, f"expected one ConfigMap {prefix}-<hash>"
    return found[0]


#: What the downward API's metadata.name gives a pod of a Deployment.
POD_NAME = "kmsync-transform-5d8f7c9b6-x2x4q"


def container_env(container: Resource, resources: list[Resource]) -> dict[str, str]:
    """The environment as the container sees it: envFrom ConfigMaps, then env (which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(named(resources, "ConfigMap", ref)["data"])
    for item in container.get("env", []):
        if item.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}:
            env[item["name"]] = POD_NAME  # the downward API: the pod's name (transform's instance id)
            continue
        assert "value" in item, f"{item['name']}: only literal values (or the pod's name) are expected"
        env[item["name"]] = item["value"]
    return env


def secret_files(deployment: Resource, container: Resource, repo: Path) -> set[str]:
    """The files a container sees from the credentials Secret: the template's keys under each of its
    mounts of that Secret."""
    template = yaml.safe_load((repo / "deploy/k8s/base/secret-template.yaml").read_text())
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return {
        posixpath.join(mount["mountPath"], key)
        for mount in container.get("volumeMounts", [])
        if volumes[mount["name"]].get("secret", {}).get("secretName") == template["metadata"]["name"]
        for key in template["stringData"]
    }


def main_container(deployment: Resource) -> Resource:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_validate_against_the_kubernetes_schemas(
    overlay: str, rendered: dict[str, list[Resource]], kubernetes_validate: ModuleType
) -> None:
    resources = rendered[overlay]
    assert {r["kind"] for r in resources} >= {"Deployment", "ConfigMap", "PodDisruptionBudget", "Service"}
    for resource in resources:
        if (resource["apiVersion"], resource["kind"]) in CRDS:
            continue
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except Exception as exc:
            pytest.fail(f"{overlay}: {resource['kind']}/{resource['metadata']['name']} is invalid: {exc}")


def test_the_schema_validation_rejects_a_broken_manifest(
    rendered: dict[str, list[Resource]], kubernetes_validate: ModuleType
) -> None:
    broken = yaml.safe_load(yaml.safe_dump(named(rendered["base"], "Deployment", "kmsync-sink")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_secret_template_is_valid_and_holds_no_values(repo: Path, kubernetes_validate: ModuleType) -> None:
    secret = yaml.safe_load((repo / "deploy/k8s/base/secret-template.yaml").read_text())
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert secret["metadata"]["name"] == "kmsync-credentials"
    assert secret["stringData"] and all(v == "" for v in secret["stringData"].values()), "a template carries no secrets"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", ["ingest", "transform", "sink"])
def test_each_service_runs_a_real_command_with_valid_settings(
    overlay: str, service: str, rendered: dict[str, list[Resource]], checks: ModuleType, repo: Path
) -> None:
    resources = rendered[overlay]
    deployment = named(resources, "Deployment", f"kmsync-{service}")
    container = main_container(deployment)
    assert container["command"][:2] == ["kmsync", service]
    assert checks.command_problems(container["command"]) == []
    cls = checks.settings_class(container["command"])
    env = container_env(container, resources)
    assert checks.env_field_problems(cls, env, secret_files(deployment, container, repo)) == []
    for init in deployment["spec"]["template"]["spec"].get("initContainers", []):
        assert checks.command_problems(init["command"]) == []
        init_cls = checks.settings_class(init["command"])
        assert init_cls is not None
        problems = checks.env_field_problems(init_cls, container_env(init, resources),
                                             secret_files(deployment, init, repo))
        assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", ["ingest", "transform", "sink"])
def test_probes_ports_and_scraping_use_the_http_port(
    overlay: str, service: str, rendered: dict[str, list[Resource]]
) -> None:
    resources = rendered[overlay]
    deployment = named(resources, "Deployment", f"kmsync-{service}")
    container = main_container(deployment)
    port = int(container_env(container, resources)["KMSYNC_HTTP_PORT"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port
    # Liveness and readiness ask the process itself, never Marketo or Kaltura (docs/reference/streaming.md §6).
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    resources_ = container["resources"]
    assert {"cpu", "memory"} <= set(resources_["requests"]) and "memory" in resources_["limits"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget(overlay: str, rendered: dict[str, list[Resource]]) -> None:
    resources = rendered[overlay]
    budgets = of_kind(resources, "PodDisruptionBudget")
    for deployment in of_kind(resources, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets
                    if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
                    and b["metadata"].get("namespace") == deployment["metadata"].get("namespace")]
        assert len(covering) == 1, f"{deployment['metadata']['name']} needs exactly one PodDisruptionBudget"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", ["ingest", "transform", "sink"])
def test_tenants_configmap_and_secret_mounts_resolve(
    overlay: str, service: str, rendered: dict[str, list[Resource]], repo: Path, checks: ModuleType
) -> None:
    resources = rendered[overlay]
    deployment = named(resources, "Deployment", f"kmsync-{service}")
    container = main_container(deployment)
    env = container_env(container, resources)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    tenants_dir, tenants_key = posixpath.split(env["KMSYNC_TENANTS_FILE"])
    configmap = named(resources, "ConfigMap", mounts[tenants_dir]["configMap"]["name"])
    document = yaml.safe_load(configmap["data"][tenants_key])
    # Files the container sees from mounted Secrets: the template's keys under the mount path.
    template = yaml.safe_load((repo / "deploy/k8s/base/secret-template.yaml").read_text())
    files = {
        posixpath.join(path, key): "x"
        for path, volume in mounts.items()
        if volume.get("secret", {}).get("secretName") == template["metadata"]["name"]
        for key in template["stringData"]
    }
    assert files, "the credentials Secret is mounted"
    assert checks.tenants_problems(document, env, files) == []


def test_production_overlay_scales_the_sink_with_keda_up_to_the_partition_count(
    rendered: dict[str, list[Resource]]
) -> None:
    resources = rendered["overlays/production"]
    scaled = {so["metadata"]["name"]: so for so in of_kind(resources, "ScaledObject")}
    assert set(scaled) == {"kmsync-sink", "kmsync-transform"}
    so = scaled["kmsync-sink"]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    target = named(resources, "Deployment", spec["scaleTargetRef"]["name"])
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert so["metadata"]["namespace"] == target["metadata"]["namespace"]
    container = main_container(target)
    assert container["command"][:2] == ["kmsync", "sink"], "KEDA scales the sink"
    assert "replicas" not in target["spec"], "KEDA owns the sink's replica count"
    assert spec["maxReplicaCount"] == MARKETO_OPS.partitions, "more sinks than partitions sit idle"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    env = container_env(container, resources)
    assert meta["bootstrapServers"] == env["KMSYNC_KAFKA_BOOTSTRAP"]
    assert meta["topic"] == env.get("KMSYNC_TOPIC_PREFIX", "") + MARKETO_OPS.name
    group = env.get("KMSYNC_SINK_GROUP_ID", SinkSettings.model_fields["sink_group_id"].default)
    assert meta["consumerGroup"] == group, "KEDA reads the lag of the sink's own consumer group"
    assert int(meta["lagThreshold"]) > 0
    assert meta.get("allowIdleConsumers", "false") == "false", "no replica beyond the partitions"
    # KEDA metadata values are strings.
    assert all(isinstance(v, str) for v in meta.values())


@pytest.mark.parametrize("overlay", ["overlays/production", "overlays/production-prometheus-operator"])
def test_production_overlay_is_namespaced_and_replicates_topics(
    overlay: str, rendered: dict[str, list[Resource]]
) -> None:
    resources = rendered[overlay]
    for resource in resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "kmsync", resource["metadata"]["name"]
    env = configmap_by_prefix(resources, "kmsync-env")["data"]
    assert int(env["TOPIC_REPLICATION_FACTOR"]) >= 3
    for deployment in of_kind(resources, "Deployment"):
        image = main_container(deployment)["image"]
        assert ":" in image and not image.endswith(":latest"), "production pins a released image"


def test_sink_drains_within_its_termination_grace(rendered: dict[str, list[Resource]], checks: ModuleType) -> None:
    """The longest drain (a lead call held in its replay wait) ends before Kubernetes kills the pod."""
    for overlay in OVERLAYS:
        deployment = named(rendered[overlay], "Deployment", "kmsync-sink")
        env = container_env(main_container(deployment), rendered[overlay])
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > checks.longest_sink_drain(env)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_meets_pod_security_restricted(overlay: str, rendered: dict[str, list[Resource]]) -> None:
    for deployment in of_kind(rendered[overlay], "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            ctx = container["securityContext"]
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx.get("readOnlyRootFilesystem") is True, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_service_reaches_the_ingest_http_port(overlay: str, rendered: dict[str, list[Resource]]) -> None:
    resources = rendered[overlay]
    service = named(resources, "Service", "kmsync-ingest")
    deployment = named(resources, "Deployment", "kmsync-ingest")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    port_names = {p["name"] for p in main_container(deployment)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_keda_lag_threshold_is_one_sink_window(rendered: dict[str, list[Resource]]) -> None:
    resources = rendered["overlays/production"]
    so = named(resources, "ScaledObject", "kmsync-sink")
    env = container_env(main_container(named(resources, "Deployment", "kmsync-sink")), resources)
    window = int(env.get("KMSYNC_WINDOW_MAX_RECORDS", SinkSettings.model_fields["window_max_records"].default))
    assert int(so["spec"]["triggers"][0]["metadata"]["lagThreshold"]) == window


def test_production_overlay_scales_transform_on_its_groups_lag_up_to_the_input_partitions(
    rendered: dict[str, list[Resource]]
) -> None:
    from kmsync_contracts.topics import ATTENDEE_STATUS, POLL_RESPONSES, SESSION_ENGAGEMENT
    from kmsync_transform.settings import TransformSettings

    resources = rendered["overlays/production"]
    so = named(resources, "ScaledObject", "kmsync-transform")
    spec = so["spec"]
    target = named(resources, "Deployment", spec["scaleTargetRef"]["name"])
    assert main_container(target)["command"][:2] == ["kmsync", "transform"], "KEDA scales transform"
    assert "replicas" not in target["spec"], "KEDA owns transform's replica count"
    partitions = {t.partitions for t in (ATTENDEE_STATUS, SESSION_ENGAGEMENT, POLL_RESPONSES)}
    assert spec["maxReplicaCount"] == max(partitions), "more replicas than input partitions sit idle"
    assert 2 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], "a second replica takes over at once"
    [trigger] = spec["triggers"]
    assert trigger["type"] == "kafka"
    group = TransformSettings.model_fields["transform_app_id"].default
    assert trigger["metadata"]["consumerGroup"] == group, "KEDA must read transform's own group"


def job_names(repo: Path) -> set[str]:
    """The scrape job names of the compose Prometheus, which the alerts and dashboard were written for."""
    config = yaml.safe_load((repo / "deploy/prometheus/prometheus.yml").read_text())
    return {job["job_name"] for job in config["scrape_configs"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_service_on_its_http_port(
    overlay: str, service: str, rendered: dict[str, list[Resource]]
) -> None:
    """transform and sink too (headless): what a ServiceMonitor, or a person, scrapes by name."""
    resources = rendered[overlay]
    target = named(resources, "Service", f"kmsync-{service}")
    deployment = named(resources, "Deployment", f"kmsync-{service}")
    assert target["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert [p["targetPort"] for p in target["spec"]["ports"] if p["name"] == "http"] == ["http"]
    if service != "ingest":
        assert target["spec"]["clusterIP"] == "None", "headless: a scrape reaches every pod"


@pytest.mark.parametrize("service", SERVICES)
def test_prometheus_operator_overlay_scrapes_each_service_as_its_job(
    service: str, rendered: dict[str, list[Resource]], repo: Path
) -> None:
    resources = rendered["overlays/production-prometheus-operator"]
    monitor = named(resources, "ServiceMonitor", f"kmsync-{service}")
    assert monitor["metadata"]["namespace"] == "kmsync"
    spec = monitor["spec"]
    selected = [s for s in of_kind(resources, "Service")
                if spec["selector"]["matchLabels"].items() <= s["metadata"].get("labels", {}).items()]
    assert [s["metadata"]["name"] for s in selected] == [f"kmsync-{service}"], "selects exactly its Service"
    [target] = selected
    deployment = named(resources, "Deployment", f"kmsync-{service}")
    container_ports = {p["name"] for p in main_container(deployment)["ports"]}
    service_ports = {p["name"]: p["targetPort"] for p in target["spec"]["ports"]}
    [endpoint] = spec["endpoints"]
    assert service_ports[endpoint["port"]] in container_ports
    assert endpoint["path"] == "/metrics"
    assert endpoint.get("honorLabels", False) is False
    # The job label comes from the Service: the same job names as the compose Prometheus, so the
    # alerts (up{job=~"kmsync.*"}) and the dashboard work unchanged.
    job = target["metadata"]["labels"][spec["jobLabel"]]
    assert job == f"kmsync-{service}" and job in job_names(repo)


def test_the_prometheus_operator_component_is_optional(rendered: dict[str, list[Resource]]) -> None:
    """Clusters without the operator's CRDs apply base and production as before."""
    assert of_kind(rendered["base"], "ServiceMonitor") == []
    assert of_kind(rendered["overlays/production"], "ServiceMonitor") == []
    operator = rendered["overlays/production-prometheus-operator"]
    assert len(of_kind(operator, "ServiceMonitor")) == len(SERVICES)
    others = [r for r in operator if r["kind"] != "ServiceMonitor"]
    assert yaml.safe_dump(others) == yaml.safe_dump(rendered["overlays/production"]), "production plus monitors only"


def test_service_monitors_decode_strictly_into_the_operators_types(
    rendered: dict[str, list[Resource]], prometheus_operator_check: Callable[[list[Resource]], Any]
) -> None:
    monitors = of_kind(rendered["overlays/production-prometheus-operator"], "ServiceMonitor")
    result = prometheus_operator_check(monitors)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ServiceMonitor") == len(SERVICES)
    # The same check refuses a misspelt field, as the operator's API server would.
    broken = yaml.safe_load(yaml.safe_dump(monitors[0]))
    broken["spec"]["endpoints"][0]["intervall"] = "30s"
    refused = prometheus_operator_check([broken])
    assert refused.returncode == 1 and 'unknown field "intervall"' in refused.stdout, refused.stdout
