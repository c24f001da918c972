"""The HTTP client stack's runtime needs (issue #22)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from unittest import mock

from httpcore import _synchronization


def test_httpcore_learns_the_async_library_without_an_import_search() -> None:
    """httpcore asks sniffio which async library runs on every request and connection close. Without
    sniffio installed each ask was a failing import that searched sys.path (~5 % of the sink's CPU in
    `kmsync bench --only capacity`); installed, the import is a sys.modules hit and no finder runs."""
    assert importlib.util.find_spec("sniffio") is not None, "sniffio is a runtime dependency (pyproject.toml)"

    async def ask() -> str:
        return _synchronization.current_async_library()

    assert asyncio.run(ask()) == "asyncio"  # the first ask imports sniffio once
    with mock.patch.object(sys, "meta_path", []):  # any import search from now on would fail
        assert asyncio.run(ask()) == "asyncio"
