"""Fixtures for the static deployment checks: the repository's files and the tools that check them.

No Docker engine and no cluster exist here, so compose, the Kubernetes manifests and the alert rules
are checked statically with real tools. Each tool is fetched from a package registry the first time
and cached under .cache/ (the Makefile may install them up front; these fixtures work without it):

- promtool: Debian package `prometheus`, unpacked under .cache/prometheus without root by
  fetch_debian_package.sh (apt-get download + dpkg-deb -x; `make tools` does the same);
- docker-compose 1.29 (Debian package `docker-compose`), only for `docker-compose config`, which
  validates the file against the Compose schema offline (no Docker engine involved);
- kustomize v5.5.0: .cache/bin/kustomize if present, else `kubectl kustomize` when kubectl embeds
  that version (the machine image has it), else `go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0`
  into .cache/bin (a cold build takes about 3 minutes on 2 cores);
- crdcheck (crdcheck/ beside this file): decodes ServiceMonitors/PodMonitors strictly into the
  Prometheus Operator's Go types (module pkg/apis/monitoring, pinned by crdcheck/go.sum); built with
  `go build` into .cache/bin (a cold build takes about 1-2 minutes on 2 cores);
- kubernetes-validate 1.37.0 (PyPI, bundles the Kubernetes JSON schemas): pip --target
  .cache/pylib/kubernetes-validate, when it is not importable.

A tool that cannot be had fails the tests with the reason; they are never skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
KUSTOMIZE_VERSION = "v5.5.0"
KUBERNETES_VALIDATE_VERSION = "1.37.0"


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def checks() -> ModuleType:
    """deploy_checks.py beside this file (tests are imported with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location("deploy_checks", Path(__file__).with_name("deploy_checks.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.prefetch_commands(module.deployed_commands())
    return module


def _debian_tool(command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` with apt-get when it is missing."""
    found = shutil.which(command)
    if found is not None:
        return found
    if os.geteuid() != 0:
        pytest.fail(f"{command} is missing and installing Debian's {package} needs root: "
                    f"run `apt-get install -y {package}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    result = _run(install, 600, env)
    if result.returncode != 0:
        update = _run(["apt-get", "update"], 300, env)
        result = _run(install, 600, env)
        if result.returncode != 0:
            pytest.fail(f"could not install {command} (Debian package {package}):\n"
                        f"{update.stderr[-2000:]}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    found = shutil.which(command)
    if found is None:
        pytest.fail(f"Debian package {package} installed but {command} is not on PATH")
    return found


#: Where fetch_debian_package.sh unpacks Debian's prometheus package (the Makefile's PROMETHEUS_ROOT).
PROMETHEUS_ROOT = CACHE / "prometheus"
FETCH_DEBIAN_PACKAGE = Path(__file__).with_name("fetch_debian_package.sh")


def unpacked_debian_tool(command: str, package: str, root: Path) -> str:
    """root/usr/bin/command, unpacking Debian's `package` under root first when it is missing
    (as any user: nothing is installed system-wide)."""
    binary = root / "usr" / "bin" / command
    if not binary.exists():
        result = _run(["bash", str(FETCH_DEBIAN_PACKAGE), package, str(root)], 600)
        if result.returncode != 0 or not binary.exists():
            pytest.fail(f"{command} is needed from Debian's {package} package:\n{result.stderr[-3000:]}")
    return str(binary)


@pytest.fixture(scope="session")
def promtool() -> str:
    return unpacked_debian_tool("promtool", "prometheus", PROMETHEUS_ROOT)


@pytest.fixture(scope="session")
def docker_compose() -> str:
    return _debian_tool("docker-compose", "docker-compose")


def _go_env() -> dict[str, str]:
    return {
        **os.environ,
        "GOBIN": str(CACHE / "bin"),
        "GOPATH": str(CACHE / "gopath"),
        "GOMODCACHE": str(CACHE / "gopath" / "pkg" / "mod"),
        "GOCACHE": str(CACHE / "gobuild"),
        "GOFLAGS": "-modcacherw",
    }


@pytest.fixture(scope="session")
def prometheus_operator_check() -> Callable[[list[dict[str, Any]]], subprocess.CompletedProcess[str]]:
    """Runs crdcheck on resources: exit 0 when every ServiceMonitor/PodMonitor among them decodes
    strictly into the Prometheus Operator's Go types (other kinds are skipped)."""
    source = Path(__file__).with_name("crdcheck")
    binary = CACHE / "bin" / "crdcheck"
    newest_source = max(p.stat().st_mtime for p in source.iterdir())
    if not binary.exists() or binary.stat().st_mtime < newest_source:
        if not shutil.which("go"):
            pytest.fail("Go is needed to build tests/deploy/crdcheck (the Prometheus Operator's types)")
        result = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=source, env=_go_env(),
                                capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            pytest.fail(f"could not build tests/deploy/crdcheck:\n{result.stderr[-3000:]}")

    def check(resources: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        text = "".join("---\n" + yaml.safe_dump(r, sort_keys=False) for r in resources)
        return subprocess.run([str(binary)], input=text, capture_output=True, text=True, timeout=60, check=False)

    return check


@pytest.fixture(scope="session")
def kustomize_build() -> Callable[[Path], list[dict[str, Any]]]:
    """`kustomize build DIR` as a list of resources."""
    binary = CACHE / "bin" / "kustomize"
    argv_prefix: list[str]
    if binary.exists():
        argv_prefix = [str(binary), "build"]
    elif shutil.which("kubectl") and KUSTOMIZE_VERSION in _run(["kubectl", "version", "--client"], 60).stdout:
        argv_prefix = ["kubectl", "kustomize"]  # the same kustomize, built into kubectl
    elif shutil.which("go"):
        result = _run(["go", "install", f"sigs.k8s.io/kustomize/kustomize/v5@{KUSTOMIZE_VERSION}"], 900, _go_env())
        if result.returncode != 0 or not binary.exists():
            pytest.fail(f"could not go install kustomize {KUSTOMIZE_VERSION}:\n{result.stderr[-3000:]}")
        argv_prefix = [str(binary), "build"]
    else:
        pytest.fail("neither Go (to go install kustomize) nor kubectl with kustomize "
                    f"{KUSTOMIZE_VERSION} (kubectl kustomize) is available")

    def build(directory: Path) -> list[dict[str, Any]]:
        result = _run([*argv_prefix, str(directory)], 120)
        if result.returncode != 0:
            pytest.fail(f"kustomize build {directory} failed:\n{result.stderr}")
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return build


@pytest.fixture(scope="session")
def kubernetes_validate() -> ModuleType:
    try:
        return importlib.import_module("kubernetes_validate")
    except ImportError:
        pass
    target = CACHE / "pylib" / "kubernetes-validate"
    if not (target / "kubernetes_validate").is_dir():
        result = _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                       "--target", str(target), f"kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"], 900)
        if result.returncode != 0:
            pytest.fail(f"could not pip install kubernetes-validate {KUBERNETES_VALIDATE_VERSION}:\n"
                        f"{result.stderr[-3000:]}")
    # Appended, not prepended: the project's own pinned packages (PyYAML, ...) keep precedence.
    if str(target) not in sys.path:
        sys.path.append(str(target))
    try:
        return importlib.import_module("kubernetes_validate")
    except ImportError as exc:
        pytest.fail(f"kubernetes-validate installed in {target} but cannot be imported: {exc}")
