"""Secrets given by reference in process settings (environment), like the tenants file's.

A setting such as ``KMSYNC_UPLOAD_TOKENS`` holds *where* secrets live, never a secret:
``{"env": "NAME"}`` or ``{"file": "/run/secrets/x"}`` (JSON, or YAML flow style ``{env: NAME}``),
or a list of them. A value that is not a reference is refused without echoing it.
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator
from pydantic_settings import NoDecode

from kmsync_config.tenants import SecretRef

_NOT_A_REFERENCE = (
    "secrets are never written inline: give a reference such as {\"env\": \"VARIABLE_NAME\"} or "
    "{\"file\": \"/path/to/secret\"} (the value was not echoed)"
)


def _load(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    if not text.startswith(("{", "[")):
        raise ValueError(_NOT_A_REFERENCE)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(_NOT_A_REFERENCE) from None


def parse_secret_ref(value: Any) -> Any:
    """One reference (or None when empty) from a setting's text."""
    loaded = _load(value)
    if loaded is not None and not isinstance(loaded, dict | SecretRef):
        raise ValueError(_NOT_A_REFERENCE)
    return loaded


def parse_secret_refs(value: Any) -> Any:
    """A list of references from a setting's text (one reference counts as a list of one)."""
    loaded = _load(value)
    if loaded is None:
        return ()
    if isinstance(loaded, dict | SecretRef):
        return (loaded,)
    if not isinstance(loaded, list | tuple):
        raise ValueError(_NOT_A_REFERENCE)
    return tuple(loaded)


#: A setting holding one secret reference (None when unset).
SecretRefSetting = Annotated[SecretRef | None, NoDecode, BeforeValidator(parse_secret_ref)]
#: A setting holding several secret references (e.g. tokens valid at once during a rotation).
SecretRefsSetting = Annotated[tuple[SecretRef, ...], NoDecode, BeforeValidator(parse_secret_refs)]


def resolve_values(refs: tuple[SecretRef, ...]) -> list[str]:
    """Every secret the references hold: a reference may hold several, one per line (rotation).

    Raises ValueError naming the reference that does not resolve (never a value)."""
    values: list[str] = []
    for ref in refs:
        text = ref.resolve().get_secret_value()
        values += [line.strip() for line in text.splitlines() if line.strip()]
    return values
