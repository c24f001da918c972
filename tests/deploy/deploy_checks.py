"""Checks shared by the compose and Kubernetes tests: is a container's command real, do its
KMSYNC_* variables belong to its settings model, do its tenants file and secrets resolve.

Loaded by conftest.py (fixture `checks`); every function returns a list of problems, empty when fine.
"""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import tempfile
import tomllib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from pydantic_settings import BaseSettings

from kmsync_cli.main import COMMANDS
from kmsync_config import ConfigError, load_settings, parse_tenants
from kmsync_sink.settings import SinkSettings

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
#: Where the Dockerfile puts the topic-creation script, and the script in the repository.
TOPICS_SCRIPT_IN_IMAGE = "/opt/kmsync/share/create_topics.py"
TOPICS_SCRIPT = REPO / "deploy" / "docker" / "create_topics.py"

#: The settings model each long-running command reads (KMSYNC_* variables).
SETTINGS_BY_COMMAND: dict[tuple[str, ...], str] = {
    ("kmsync", "ingest"): "kmsync_ingest.settings:IngestSettings",
    ("kmsync", "transform"): "kmsync_transform.settings:TransformSettings",
    ("kmsync", "sink"): "kmsync_sink.settings:SinkSettings",
    ("python", TOPICS_SCRIPT_IN_IMAGE): "kmsync_config.settings:CommonSettings",
}


def console_scripts() -> dict[str, str]:
    with (REPO / "pyproject.toml").open("rb") as fh:
        scripts: dict[str, str] = tomllib.load(fh)["project"]["scripts"]
    return scripts


def _import_attr(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def settings_class(argv: list[str]) -> type[BaseSettings] | None:
    for prefix, ref in SETTINGS_BY_COMMAND.items():
        if tuple(argv[: len(prefix)]) == prefix:
            cls: type[BaseSettings] = _import_attr(ref)
            return cls
    return None


def _help_text(argv: list[str]) -> tuple[int, str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "COLUMNS": "200"})
    return result.returncode, result.stdout + result.stderr


def command_problems(argv: list[str]) -> list[str]:
    """The program is a console script of pyproject (or the topics script), the kmsync subcommand
    is in COMMANDS and built, and every --option given appears in the command's --help."""
    return list(_command_problems(tuple(argv)))


@functools.cache
def _command_problems(argv_tuple: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_check_command(list(argv_tuple)))


def _check_command(argv: list[str]) -> list[str]:
    if not argv:
        return ["empty command"]
    options = [a.split("=", 1)[0] for a in argv if a.startswith("--")]
    if argv[0] == "python":
        if argv[1:2] != [TOPICS_SCRIPT_IN_IMAGE]:
            return [f"python runs {argv[1:2]}, only {TOPICS_SCRIPT_IN_IMAGE} is shipped in the image"]
        help_argv = [str(VENV_BIN / "python"), str(TOPICS_SCRIPT), "--help"]
    else:
        scripts = console_scripts()
        if argv[0] not in scripts:
            return [f"{argv[0]!r} is not a console script of pyproject [project.scripts] ({sorted(scripts)})"]
        module_name, _, func = scripts[argv[0]].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            return [f"{argv[0]}: entry point module {module_name} cannot be imported: {exc}"]
        if not callable(getattr(module, func, None)):
            return [f"{argv[0]}: entry point {scripts[argv[0]]} has no callable {func}"]
        words = [argv[0]]
        if argv[0] == "kmsync":
            if len(argv) < 2 or argv[1] not in COMMANDS:
                return [f"kmsync subcommand {argv[1:2]} is not in kmsync_cli.main.COMMANDS ({sorted(COMMANDS)})"]
            sub_module = COMMANDS[argv[1]][0]
            try:
                entry = importlib.import_module(sub_module)
            except ImportError as exc:
                return [f"kmsync {argv[1]}: module {sub_module} is not built: {exc}"]
            if not callable(getattr(entry, "main", None)):
                return [f"kmsync {argv[1]}: {sub_module} has no main(argv)"]
            words.append(argv[1])
        help_argv = [str(VENV_BIN / words[0]), *words[1:], "--help"]
    code, text = _help_text(help_argv)
    if code != 0:
        shown = " ".join([Path(help_argv[0]).name, *help_argv[1:]])
        return [f"`{shown}` exited {code}: {text[-1500:]}"]
    return [f"{' '.join(argv[:2])}: option {opt} does not appear in its --help" for opt in options
            if opt not in text]


def prefetch_commands(argvs: list[list[str]]) -> None:
    """Run the --help checks of several commands at once (each imports the whole service)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(command_problems, argvs))


def deployed_commands() -> list[list[str]]:
    """Every command docker-compose.yml and the Kubernetes base run with the kmsync image."""
    argvs: list[list[str]] = []
    for service in yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"].values():
        command = service.get("command")
        if service.get("image") == "kmsync:local" and isinstance(command, list):
            argvs.append([str(c) for c in command])
    for path in sorted((REPO / "deploy/k8s/base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                pod = doc["spec"]["template"]["spec"]
                argvs += [c["command"] for c in [*pod.get("initContainers", []), *pod["containers"]]]
    return argvs


def env_field_problems(cls: type[BaseSettings], env: dict[str, str], secret_files: Iterable[str] = ()) -> list[str]:
    """Every KMSYNC_* variable names a field of `cls`, and the model validates with them all.

    `secret_files`: the paths the container has from mounted secrets. A {"file": P} reference to one
    of them resolves (to a stand-in file with a 32-character value); any other file does not."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    fields = set(cls.model_fields)
    problems = [
        f"{key} is not a setting of {cls.__name__} (fields: {', '.join(sorted(fields))})"
        for key in sorted(env)
        if key.upper().startswith(prefix.upper()) and key[len(prefix):].lower() not in fields
    ]
    if problems:
        return problems
    cleaned = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefix.upper())}
    with tempfile.TemporaryDirectory(prefix="kmsync-secrets-") as scratch:
        local = dict(env)
        for i, path in enumerate(sorted(set(secret_files), key=len, reverse=True)):
            stand_in = Path(scratch) / f"secret-{i}"
            stand_in.write_text("s" * 32 + "\n")
            local = {k: v.replace(path, str(stand_in)) for k, v in local.items()}
        with mock.patch.dict(os.environ, {**cleaned, **local}, clear=True):
            try:
                load_settings(cls)
            except ConfigError as exc:
                return [f"{cls.__name__} rejects the environment: {exc}"]
    return []


def tenants_problems(document: object, env: dict[str, str], files: dict[str, str]) -> list[str]:
    """The tenants document validates, and every secret reference resolves: {env: X} from `env`,
    {file: P} from `files` (path -> content) as the container would see them."""
    try:
        cfg = parse_tenants(document, source="tenants", check_secrets=False)
    except ConfigError as exc:
        return [str(exc)]
    refs = [(f"marketo_instances.{name}.client_secret", inst.client_secret)
            for name, inst in cfg.marketo_instances.items()]
    for pid, partner in (cfg.kaltura_partners or {}).items():
        refs.append((f"kaltura_partners.{pid}.admin_secret", partner.admin_secret))
        if partner.notification_secret is not None:
            refs.append((f"kaltura_partners.{pid}.notification_secret", partner.notification_secret))
    problems = []
    for where, ref in refs:
        if ref.env is not None and ref.env not in env:
            problems.append(f"{where}: environment variable {ref.env} is not set in the container")
        if ref.file is not None and str(ref.file) not in files:
            problems.append(f"{where}: file {ref.file} is not provided by a mounted secret")
    return problems


def longest_sink_drain(env: dict[str, str]) -> float:
    """The sink's longest drain under a deployment's environment: ``SinkSettings.longest_drain_seconds``
    (kmsync_sink.settings) of the settings that environment gives. Built from the deployment's KMSYNC_* variables
    alone: the tests' own (tests/conftest.py sets the replay delay to 0) are left out, so a default counts as
    deployed. Its secret references are not resolved here (``env_field_problems`` checks them)."""
    outside = {k: v for k, v in os.environ.items() if not k.upper().startswith("KMSYNC_")}
    with mock.patch.dict(os.environ, {**outside, **env}, clear=True):
        return load_settings(SinkSettings, email_hash_secret=None).longest_drain_seconds
