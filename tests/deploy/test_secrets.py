"""Deployment secrets (compose and Kubernetes): every kmsync process gets the same email-hash key
(KMSYNC_EMAIL_HASH_SECRET) and ingest its upload tokens (KMSYNC_UPLOAD_TOKENS), each as a reference
to a file of a mounted secret, never as a value in a manifest; the files exist only where secrets
live (a Docker secret made by `make compose-secrets` and kept out of git, the Kubernetes Secret
kmsync-credentials)."""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmsync_config.references import parse_secret_ref, parse_secret_refs
from kmsync_config.tenants import SecretRef

Resource = dict[str, Any]
KMSYNC_CONTAINERS = ["topics", "ingest", "transform", "sink"]
SECRET_NAMES = re.compile(r"SECRET|TOKEN|PASSWORD|_KEY\b", re.I)


def file_refs(value: str) -> list[str]:
    """The files a KMSYNC_* secret setting refers to; fails on a value that is no reference."""
    refs = parse_secret_refs(value)
    assert refs, f"{value!r} refers to nothing"
    return [SecretRef.model_validate(r).file.as_posix() for r in refs if SecretRef.model_validate(r).file]


@pytest.fixture(scope="module")
def compose(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((repo / "docker-compose.yml").read_text())
    return data


def mounted_secret_files(service: dict[str, Any]) -> set[str]:
    return {f"/run/secrets/{s if isinstance(s, str) else s.get('target', s['source'])}"
            for s in service.get("secrets", [])}


@pytest.mark.parametrize("name", KMSYNC_CONTAINERS)
def test_compose_gives_every_kmsync_container_the_email_hash_key_from_a_docker_secret(
    name: str, compose: dict[str, Any]
) -> None:
    service = compose["services"][name]
    env = {str(k): str(v) for k, v in service["environment"].items()}
    [path] = file_refs(env["KMSYNC_EMAIL_HASH_SECRET"])
    assert path in mounted_secret_files(service), f"{name}: {path} is not one of its mounted secrets"
    # The same key everywhere, so one person's hash matches across the services' logs.
    references = {str(compose["services"][n]["environment"]["KMSYNC_EMAIL_HASH_SECRET"]) for n in KMSYNC_CONTAINERS}
    assert len(references) == 1


def test_compose_gives_ingest_its_upload_tokens_from_a_docker_secret(compose: dict[str, Any]) -> None:
    ingest = compose["services"]["ingest"]
    paths = file_refs(str(ingest["environment"]["KMSYNC_UPLOAD_TOKENS"]))
    assert paths and set(paths) <= mounted_secret_files(ingest)
    assert all("KMSYNC_UPLOAD_TOKENS" not in compose["services"][n].get("environment", {})
               for n in ("transform", "sink")), "only ingest takes uploads"


def test_compose_secrets_are_made_by_make_and_kept_out_of_git(compose: dict[str, Any], repo: Path) -> None:
    declared = compose["secrets"]
    used = {Path(p).name for s in compose["services"].values() for p in mounted_secret_files(s)}
    assert used == set(declared)
    make = subprocess.run(["make", "-n", "-B", "compose-secrets"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout
    for name, secret in declared.items():
        source = Path(secret["file"]).as_posix().removeprefix("./")
        assert f"> {source}.tmp" in make and f"mv {source}.tmp {source}" in make, f"make compose-secrets makes {source}"
        ignored = subprocess.run(["git", "check-ignore", "-q", source], cwd=repo, check=False)
        assert ignored.returncode == 0, f"{source} (secret {name}) must be git-ignored"


def test_compose_sets_no_kmsync_secret_inline(compose: dict[str, Any]) -> None:
    for name in KMSYNC_CONTAINERS:
        for key, value in compose["services"][name]["environment"].items():
            if key.startswith("KMSYNC_") and SECRET_NAMES.search(key):
                file_refs(str(value))  # a reference (parse_secret_refs refuses an inline value)


@pytest.fixture(scope="module")
def rendered(repo: Path, kustomize_build: Callable[[Path], list[Resource]]) -> dict[str, list[Resource]]:
    overlays = ["base", "overlays/production", "overlays/production-prometheus-operator"]
    return {name: kustomize_build(repo / "deploy/k8s" / name) for name in overlays}


def k8s_env(container: Resource, resources: list[Resource]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        [configmap] = [r for r in resources if r["kind"] == "ConfigMap"
                       and r["metadata"]["name"] == source["configMapRef"]["name"]]
        env.update(configmap["data"])
    env.update({item["name"]: item["value"] for item in container.get("env", []) if "value" in item})
    return env


def credential_files(deployment: Resource, container: Resource, repo: Path) -> set[str]:
    template = yaml.safe_load((repo / "deploy/k8s/base/secret-template.yaml").read_text())
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return {posixpath.join(m["mountPath"], key) for m in container.get("volumeMounts", [])
            if volumes[m["name"]].get("secret", {}).get("secretName") == template["metadata"]["name"]
            for key in template["stringData"]}


@pytest.mark.parametrize("overlay", ["base", "overlays/production", "overlays/production-prometheus-operator"])
def test_k8s_every_container_gets_the_email_hash_key_and_ingest_its_tokens_from_the_secret(
    overlay: str, rendered: dict[str, list[Resource]], repo: Path
) -> None:
    resources = rendered[overlay]
    deployments = [r for r in resources if r["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"kmsync-ingest", "kmsync-transform", "kmsync-sink"}
    references = set()
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            env = k8s_env(container, resources)
            files = credential_files(deployment, container, repo)
            [path] = file_refs(env["KMSYNC_EMAIL_HASH_SECRET"])
            assert path in files, f"{where}: {path} is not a file of the mounted Secret"
            references.add(env["KMSYNC_EMAIL_HASH_SECRET"])
            is_ingest = container["command"][:2] == ["kmsync", "ingest"]
            assert ("KMSYNC_UPLOAD_TOKENS" in env) == is_ingest, where
            if is_ingest:
                tokens = file_refs(env["KMSYNC_UPLOAD_TOKENS"])
                assert tokens and set(tokens) <= files, f"{where}: upload tokens not from the Secret"
    assert len(references) == 1, "the same key in every service"


@pytest.mark.parametrize("overlay", ["base", "overlays/production", "overlays/production-prometheus-operator"])
def test_k8s_manifests_hold_no_secret_value(overlay: str, rendered: dict[str, list[Resource]]) -> None:
    """A secret-named setting is a reference, in ConfigMaps and env alike; no Secret is rendered (the
    credentials are created by hand, so `kubectl apply -k` never overwrites them)."""
    resources = rendered[overlay]
    assert [r for r in resources if r["kind"] == "Secret"] == []
    settings: list[tuple[str, str]] = []
    for resource in resources:
        if resource["kind"] == "ConfigMap":
            settings += [(k, v) for k, v in resource.get("data", {}).items() if k.startswith("KMSYNC_")]
        if resource["kind"] == "Deployment":
            pod = resource["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                settings += [(e["name"], e.get("value", "")) for e in container.get("env", [])]
    secret_like = [(k, v) for k, v in settings if SECRET_NAMES.search(k)]
    assert {k for k, _ in secret_like} >= {"KMSYNC_EMAIL_HASH_SECRET", "KMSYNC_UPLOAD_TOKENS"}
    for key, value in secret_like:
        assert key.startswith("KMSYNC_"), f"{key}: only kmsync's reference settings may name a secret"
        assert parse_secret_ref(value) if key.endswith("_SECRET") else parse_secret_refs(value), key
