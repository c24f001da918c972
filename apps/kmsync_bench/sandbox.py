"""The Marketo sandbox as its own process, and its admin API (/_sandbox/: call counts, request log)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from kmsync_cli.processes import Child, ProcessGroup
from kmsync_common.clock import SYSTEM_CLOCK

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"  # the sandbox's published test credential, not a secret
EXTERNAL_CLIENT_ID = "bench-external-tool"
EXTERNAL_CLIENT_SECRET = "bench-external-secret"
# Identity calls are never counted by Marketo (docs/reference/marketo-api.md §2.1).
IDENTITY_PATH = "/identity/oauth/token"
#: Endpoint templates that write records (the ones records-per-call divides by).
WRITE_MARKERS = ("/rest/v1/leads.json", "/members/status.json", "/rest/v1/customobjects/",
                 "/rest/v1/activities/external.json", "/bulk/v1/")
#: Calls the sandbox keeps in an instance's request log (marketo_sandbox.instance: its deque's maxlen).
REQUEST_LOG_SIZE = 5000
_LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


def is_identity(endpoint: str) -> bool:
    return endpoint.partition(" ")[2] == IDENTITY_PATH


def is_write(endpoint: str) -> bool:
    """POSTs that carry records; bulk status/failure reads are not writes but still calls."""
    method, _, path = endpoint.partition(" ")
    if method != "POST" or path.endswith("/delete.json"):
        return False
    return any(marker in path for marker in WRITE_MARKERS)


def is_bulk(endpoint: str) -> bool:
    return " /bulk/v1/" in endpoint


def count_calls(by_endpoint: dict[str, dict[str, int]], *, writes_only: bool = False,
                codes: Iterable[str] | None = None) -> int:
    wanted = set(codes) if codes is not None else None
    total = 0
    for endpoint, per_code in by_endpoint.items():
        if is_identity(endpoint) or (writes_only and not is_write(endpoint)):
            continue
        total += sum(n for code, n in per_code.items() if wanted is None or code in wanted)
    return total


def instances_file(path: Path, limits: dict[str, dict[str, Any]]) -> Path:
    """Every instance gets the kaltura preset, the sandbox credentials, and the external tool's."""
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
               {"client_id": EXTERNAL_CLIENT_ID, "client_secret": EXTERNAL_CLIENT_SECRET,
                "scope": "external-tool@bench.example"}]
    doc = [{"munchkin_id": munchkin, "preset": "kaltura", "clients": clients, "limits": lim}
           for munchkin, lim in limits.items()]
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass
class SandboxProcess:
    child: Child
    base_url: str

    def instance_url(self, munchkin: str) -> str:
        return f"{self.base_url}/{munchkin}"


def start_sandbox(group: ProcessGroup, python_bin: Path, instances: Path, timeout: float = 60) -> SandboxProcess:
    child = group.start("marketo-sandbox", [str(python_bin), "-m", "marketo_sandbox", "--host", "127.0.0.1",
                                            "--port", "0", "--preset", "kaltura", "--instances", str(instances)])
    deadline = SYSTEM_CLOCK.monotonic() + timeout
    while SYSTEM_CLOCK.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"marketo-sandbox exited with {child.process.returncode}:\n{child.log_tail()}")
        found = _LISTENING.search(child.log_tail(200))
        if found:
            return SandboxProcess(child, found.group(1))
        time.sleep(0.1)  # polling the child's log for its address, with a deadline
    raise RuntimeError(f"marketo-sandbox did not report its address:\n{child.log_tail()}")


class SandboxAdmin:
    """The sandbox's admin API; never limited or authenticated."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=60)

    async def calls(self, munchkin: str) -> dict[str, Any]:
        resp = await self.http.get("/_sandbox/calls", params={"instance": munchkin})
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def by_endpoint(self, munchkin: str) -> dict[str, dict[str, int]]:
        data: dict[str, dict[str, int]] = (await self.calls(munchkin))["by_endpoint"]
        return data

    async def by_client(self, munchkin: str, client_id: str) -> dict[str, dict[str, int]]:
        data: dict[str, dict[str, int]] = (await self.calls(munchkin))["by_client"].get(client_id, {})
        return data

    async def call_times(self, munchkin: str, client_id: str | None = None) -> list[float]:
        """Start times (sandbox clock, epoch seconds) of the logged calls, Identity excluded (last 5,000)."""
        return [float(r["at"]) for r in await self.request_log(munchkin)
                if not is_identity(str(r.get("endpoint", "")))
                and (client_id is None or r.get("clientId") == client_id)]

    async def request_log(self, munchkin: str, limit: int = REQUEST_LOG_SIZE) -> list[dict[str, Any]]:
        """The instance's last ``limit`` calls (the sandbox keeps REQUEST_LOG_SIZE), oldest first."""
        resp = await self.http.get("/_sandbox/requests", params={"instance": munchkin, "limit": str(limit)})
        resp.raise_for_status()
        data: list[dict[str, Any]] = resp.json()
        return data

    async def dump(self, munchkin: str) -> dict[str, Any]:
        resp = await self.http.get("/_sandbox/dump", params={"instance": munchkin})
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def limits(self, munchkin: str) -> dict[str, Any]:
        resp = await self.http.get("/_sandbox/limits", params={"instance": munchkin})
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def aclose(self) -> None:
        await self.http.aclose()


def diff_counts(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Per endpoint and code: calls made between two snapshots."""
    out: dict[str, dict[str, int]] = {}
    for endpoint, codes in after.items():
        delta = {code: n - before.get(endpoint, {}).get(code, 0) for code, n in codes.items()}
        delta = {code: n for code, n in delta.items() if n}
        if delta:
            out[endpoint] = delta
    return out
