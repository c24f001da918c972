"""ingest's OpenAPI document: openapi.yaml, shipped in this package (the one copy), served at /openapi.json."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

#: The document's file, next to this module (package data).
DOCUMENT = "openapi.yaml"


def openapi_document() -> dict[str, Any]:
    """The parsed document (YAML anchors resolved). Raises RuntimeError when the package was installed
    without its data file, so ingest fails at start rather than serving a partial API description."""
    try:
        text = resources.files(__package__ or "kmsync_ingest").joinpath(DOCUMENT).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RuntimeError(f"kmsync_ingest was installed without its package data {DOCUMENT}") from exc
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or "paths" not in document:
        raise RuntimeError(f"{DOCUMENT} is not an OpenAPI document (no paths)")
    return document
