"""The lock files (issue #20 items 8 and 9): requirements.lock is what the image runs, every package
pinned with its hashes and no test, lint or dead dependency in it; requirements-dev.lock adds the
dev tools on the same pins; both say the command that made them, the one `make lock` runs, and both
are in step with pyproject.toml. A hash-checked install (`pip install --require-hashes`) takes
nothing that is not in the lock, so the lock's list is exactly what an install pulls in."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

RUNTIME = "requirements.lock"
DEV = "requirements-dev.lock"
#: The image's build backend (pyproject [build-system] requires, from requirements-build.in).
BUILD = "requirements-build.lock"
#: Never in the runtime lock: test and lint tools, the Marketo client the tests compare against, and
#: faust-streaming with what only it pulled in (no code imports faust since ContractCodec went).
NOT_AT_RUNTIME = {"pytest", "pytest-asyncio", "pytest-timeout", "ruff", "mypy", "hypothesis", "marketorestpython",
                  "types-pyyaml", "types-tqdm", "faust-streaming", "mode-streaming", "aiohttp-cors", "venusian",
                  "croniter", "terminaltables", "intervaltree"}


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) of a lock file in pip's requirements format."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    found: dict[str, tuple[str, list[str]]] = {}
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)(.*)", line)
        assert match and not match.group(4).strip(), f"{path.name}: not a pinned, hashed requirement: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in found, f"{path.name}: {name} pinned twice"
        found[name] = (match.group(2), re.findall(r"sha256:([0-9a-f]{64})", match.group(3)))
    return found


def project(repo: Path) -> dict[str, object]:
    with (repo / "pyproject.toml").open("rb") as fh:
        table: dict[str, object] = tomllib.load(fh)["project"]
    return table


def recorded_command(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert "via the following command" in lines[0], f"{path.name} must say how it was made"
    return shlex.split(lines[1].lstrip("# "))


@pytest.mark.parametrize("lock", [RUNTIME, DEV, BUILD])
def test_every_package_is_pinned_with_hashes(repo: Path, lock: str) -> None:
    pinned = entries(repo / lock)
    assert len(pinned) > (1 if lock == BUILD else 20)
    unhashed = sorted(name for name, (_, hashes) in pinned.items() if not hashes)
    assert unhashed == [], f"{lock}: pinned without --hash: {unhashed}"


def test_runtime_lock_has_no_dev_tools_and_no_faust(repo: Path) -> None:
    pinned = entries(repo / RUNTIME)
    assert sorted(NOT_AT_RUNTIME & set(pinned)) == []


def test_pyproject_no_longer_depends_on_faust_and_no_code_imports_it(repo: Path) -> None:
    names = {canonicalize_name(Requirement(r).name) for r in project(repo)["dependencies"]}  # type: ignore[attr-defined]
    assert "faust-streaming" not in names
    imports = subprocess.run(["git", "grep", "-nE", r"^\s*(import faust|from faust)", "--", "*.py"],
                             cwd=repo, capture_output=True, text=True, check=False)
    assert imports.stdout == "", f"faust is imported but not a dependency:\n{imports.stdout}"


def test_locks_satisfy_pyproject(repo: Path) -> None:
    """Every dependency of pyproject is pinned in the runtime lock, every dev extra in the dev lock,
    at a version the requirement accepts: a pyproject edit without `make lock` fails here."""
    runtime, dev = entries(repo / RUNTIME), entries(repo / DEV)
    table = project(repo)
    wanted = [(RUNTIME, runtime, r) for r in table["dependencies"]]  # type: ignore[attr-defined]
    wanted += [(DEV, dev, r) for r in table["optional-dependencies"]["dev"]]  # type: ignore[index]
    for lock, pinned, text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} does not pin {name} (pyproject: {text}); run `make lock`"
        assert requirement.specifier.contains(pinned[name][0], prereleases=True), (
            f"{lock} pins {name}=={pinned[name][0]}, pyproject wants {text}; run `make lock`")


def test_build_lock_pins_what_pyproject_builds_with(repo: Path) -> None:
    with (repo / "pyproject.toml").open("rb") as fh:
        requires = tomllib.load(fh)["build-system"]["requires"]
    listed = [line.strip() for line in (repo / "requirements-build.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert sorted(listed) == sorted(requires), "requirements-build.in is pyproject's [build-system] requires"
    pinned = entries(repo / BUILD)
    for text in requires:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned and requirement.specifier.contains(pinned[name][0]), f"{BUILD}: {text}; run `make lock`"


def test_dev_lock_keeps_every_runtime_pin(repo: Path) -> None:
    """The venv installs both locks: the dev lock may add packages, never move a runtime pin."""
    runtime, dev = entries(repo / RUNTIME), entries(repo / DEV)
    moved = {name: (version, dev.get(name, ("missing",))[0]) for name, (version, _) in runtime.items()
             if dev.get(name, ("missing",))[0] != version}
    assert moved == {}
    assert {"pytest", "ruff", "mypy"} <= set(dev)


def test_locks_record_the_command_make_lock_runs(repo: Path) -> None:
    make = subprocess.run(["make", "-n", "-B", "lock", "LOCK_FLAGS="], cwd=repo, capture_output=True, text=True,
                          check=True).stdout
    commands = [shlex.split(line) for line in re.sub(r"\\\n", " ", make).splitlines() if " pip compile " in line]
    assert len(commands) == 3
    for lock in (RUNTIME, DEV, BUILD):
        [command] = [c for c in commands if c[-1] == lock]
        assert Path(command[0]).name == "uv"
        assert recorded_command(repo / lock) == ["uv", *command[1:]], f"{lock} was not made by `make lock`"
    runtime_args = recorded_command(repo / RUNTIME)
    assert "--generate-hashes" in runtime_args and "--extra" not in runtime_args


def test_make_venv_installs_both_locks_with_hashes(repo: Path) -> None:
    make = subprocess.run(["make", "-n", "-B", "venv"], cwd=repo, capture_output=True, text=True, check=True).stdout
    installs = [line for line in make.splitlines() if "pip install" in line]
    assert any(f"--require-hashes -r {RUNTIME}" in line for line in installs), installs
    assert any(f"--require-hashes -r {DEV}" in line for line in installs), installs
    assert all("--require-hashes" in line or "--no-deps -e ." in line for line in installs), installs
