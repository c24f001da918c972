"""Fixtures: a kaltura-preset sandbox on 127.0.0.1:0 with a manual clock, and an httpx client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from marketo_sandbox.clock import ManualClock
from marketo_sandbox.testing import SandboxHandle, running_sandbox

START = 1_772_636_400.0  # 2026-03-04T15:00:00Z, a Wednesday


class Api:
    """Thin helper: an httpx client bound to one sandbox instance, with a token."""

    def __init__(self, sb: SandboxHandle, http: httpx.AsyncClient) -> None:
        self.sb = sb
        self.http = http
        self.token: str | None = None

    async def login(self) -> str:
        r = await self.http.get("/identity/oauth/token", params={
            "grant_type": "client_credentials", "client_id": self.sb.client_id,
            "client_secret": self.sb.client_secret})
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]
        return self.token

    @staticmethod
    def error_of(body: dict[str, Any]) -> tuple[str, str]:
        """(code, message) of a response-level error; asserts the envelope shape."""
        assert body["success"] is False, body
        assert len(body["errors"]) == 1
        err = body["errors"][0]
        assert isinstance(err["code"], str)  # codes are strings, as Marketo sends them
        return err["code"], err["message"]

    def headers(self) -> dict[str, str]:
        assert self.token
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.http.get(path, headers=self.headers(), **kw)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def post(self, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.http.post(path, headers=self.headers(), **kw)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
async def sb() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(preset="kaltura", clock=ManualClock(START), seed=7) as handle:
        yield handle


@pytest.fixture
async def api(sb: SandboxHandle) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=sb.base_url, timeout=10) as http:
        a = Api(sb, http)
        await a.login()
        yield a
