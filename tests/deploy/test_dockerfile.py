"""deploy/docker/Dockerfile, read statically: one exact python:3.11.N-slim tag, installs the runtime
lock (hash-checked, never the dev lock) then the project's wheel (built by the hash-checked build
lock's backend) without dependencies, runs as a non-root user, copies only files that exist and that the
build context's ignore file lets through, and every console script the deployments use is built."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest

DOCKERFILE = Path("deploy/docker/Dockerfile")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def steps(repo: Path) -> list[tuple[str, str]]:
    return instructions((repo / DOCKERFILE).read_text())


def test_both_stages_use_one_exact_python_3_11_slim_release(steps: list[tuple[str, str]]) -> None:
    """A floating tag (python:3.11-slim) changes under the same Dockerfile; an exact patch release
    on a named Debian release does not (issue #20 item 8)."""
    bases = [args.split()[0] for op, args in steps if op == "FROM"]
    assert len(bases) == 2 and len(set(bases)) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", bases[0]), bases[0]


def test_installs_the_runtime_lock_with_hashes_then_the_project_without_dependencies(
    steps: list[tuple[str, str]]
) -> None:
    runs = [args for op, args in steps if op == "RUN"]
    lock = next(i for i, r in enumerate(runs) if re.search(r"pip install --require-hashes -r requirements\.lock", r))
    project = next(i for i, r in enumerate(runs) if re.search(r"pip install --no-deps /tmp/dist/kmsync-\S*\.whl", r))
    assert lock < project
    # The wheel is built by the hash-pinned build backend, never one fetched unpinned by build isolation.
    assert re.search(r"pip install --require-hashes -r requirements-build\.lock", runs[lock])
    assert re.search(r"pip wheel --no-deps --no-build-isolation -w /tmp/dist \.", runs[project])
    pip_installs = re.findall(r"pip install ([^&]*)", " ".join(runs))
    assert all("--require-hashes" in args or args.startswith("--no-deps /tmp/dist/") for args in pip_installs), (
        pip_installs)
    everything = " ".join(args for _, args in steps)
    assert "requirements-dev.lock" not in everything, "the image gets no test or lint tools"


def test_runs_as_a_non_root_user(steps: list[tuple[str, str]]) -> None:
    users = [args for op, args in steps if op == "USER"]
    assert users, "the image must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"0", "root"}
    # The final stage starts after the last FROM; USER must be set there.
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    assert any(op == "USER" for op, _ in steps[last_from:])


def test_copied_sources_exist_and_pass_the_ignore_file(repo: Path, steps: list[tuple[str, str]]) -> None:
    ignore = [line.strip() for line in (repo / "deploy/docker/Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]

    def included(path: str) -> bool:
        verdict = True
        for pattern in ignore:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
                verdict = negate
        return verdict

    copies = [shlex.split(args) for op, args in steps if op == "COPY"]
    local = [c for c in copies if not any(a.startswith("--from") for a in c)]
    assert local
    for *sources, _dest in local:
        for source in sources:
            assert (repo / source).exists(), f"COPY {source}: no such file in the repository"
            assert included(source.rstrip("/")), f"COPY {source}: excluded by Dockerfile.dockerignore"
    assert not included("requirements-dev.lock"), "the dev lock stays out of the build context"


def test_the_topics_script_lands_where_deployments_run_it(
    repo: Path, steps: list[tuple[str, str]], checks: ModuleType
) -> None:
    copies = [shlex.split(args) for op, args in steps if op == "COPY"]
    assert ["deploy/docker/create_topics.py", checks.TOPICS_SCRIPT_IN_IMAGE] in copies
    assert (repo / "deploy/docker/create_topics.py") == checks.TOPICS_SCRIPT
