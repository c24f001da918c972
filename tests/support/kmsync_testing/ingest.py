"""In-process ingest for tests (also usable by other components' end-to-end tests).

``running_ingest(settings, tenants, sandbox)`` starts the service and its HTTP server on an
ephemeral port and stops both afterwards; ``tenants_for(sandbox, dir)`` writes a tenants
configuration for a Kaltura sandbox scenario; ``kmsync_testing.topics.read_topic`` reads a topic to its end.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from kmsync_common.metrics_text import sample_sum
from kmsync_config import EventConfig, TenantsConfig, parse_tenants
from kmsync_ingest.http_app import serve
from kmsync_ingest.kaltura_source import KalturaPullSource, client_for
from kmsync_ingest.ownership import owner_partition
from kmsync_ingest.service import IngestService
from kmsync_ingest.settings import IngestSettings
from kmsync_ingest.source import KalturaSource
from kmsync_testing.waiting import wait_for

if TYPE_CHECKING:
    from kaltura_sandbox.testing import RunningSandbox


def tenants_document(sb: RunningSandbox, secrets_dir: Path, *, with_sessions: bool = True) -> dict[str, Any]:
    """A tenants file (as a mapping) for the sandbox's event; secrets are written under secrets_dir."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    (secrets_dir / "kaltura").write_text(sb.admin_secret)
    (secrets_dir / "marketo").write_text("not-used-by-ingest")
    return {
        "marketo_instances": {"main": {
            "munchkin_id": "123-ABC-456", "endpoint": "http://127.0.0.1:1", "client_id": "ingest-tests",
            "client_secret": {"file": str(secrets_dir / "marketo")},
        }},
        "kaltura_partners": {sb.partner_id: {
            "service_url": sb.service_url, "user_profile_url": sb.user_profile_url,
            "admin_secret": {"file": str(secrets_dir / "kaltura")},
        }},
        "events": [{
            "name": "sandbox event", "partner_id": sb.partner_id, "virtual_event_id": sb.virtual_event_id,
            "app_guid": sb.app_guid, "marketo_instance": "main", "program_id": 1001,
            "sessions": [{"entry_id": e} for e in sb.session_entry_ids] if with_sessions else [],
        }],
    }


def multi_tenants_document(sandboxes: Sequence[RunningSandbox], secrets_dir: Path) -> dict[str, Any]:
    """A tenants file for several sandboxes, one partner and one event each (their sessions listed)."""
    doc = tenants_document(sandboxes[0], secrets_dir)
    doc["kaltura_partners"], doc["events"] = {}, []
    for sb in sandboxes:
        secret = secrets_dir / f"kaltura-{sb.partner_id}"
        secret.write_text(sb.admin_secret)
        doc["kaltura_partners"][sb.partner_id] = {
            "service_url": sb.service_url, "user_profile_url": sb.user_profile_url,
            "admin_secret": {"file": str(secret)},
        }
        doc["events"].append({
            "name": f"event {sb.virtual_event_id}", "partner_id": sb.partner_id,
            "virtual_event_id": sb.virtual_event_id, "app_guid": sb.app_guid, "marketo_instance": "main",
            "program_id": 1001, "sessions": [{"entry_id": e} for e in sb.session_entry_ids],
        })
    return doc


def events_on_distinct_partitions(count: int, partitions: int, first_partner: int = 2_000_001) -> list[tuple[int, int]]:
    """``count`` (partner id, virtual event id) pairs whose events own different coordination
    partitions (deterministic), so that replicas sharing the partitions each get events."""
    out: list[tuple[int, int]] = []
    taken: set[int] = set()
    vid = 50_000
    while len(out) < count:
        vid += 1
        pid = first_partner + len(out)
        p = owner_partition(pid, vid, partitions)
        if p not in taken:
            taken.add(p)
            out.append((pid, vid))
    return out


def tenants_for(sb: RunningSandbox, secrets_dir: Path, *, with_sessions: bool = True) -> TenantsConfig:
    return parse_tenants(tenants_document(sb, secrets_dir, with_sessions=with_sessions), "test tenants")


#: The upload token tests use, given by reference like in production (KMSYNC_TEST_UPLOAD_TOKEN).
TEST_UPLOAD_TOKEN_ENV = "KMSYNC_TEST_UPLOAD_TOKEN"
TEST_UPLOAD_TOKEN = "test-upload-token-0123456789abcdef"


def upload_headers(content_type: str | None = "text/csv", token: str = TEST_UPLOAD_TOKEN) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def settings_for(bootstrap: str, prefix: str, sb: RunningSandbox | None, **overrides: Any) -> IngestSettings:
    os.environ.setdefault(TEST_UPLOAD_TOKEN_ENV, TEST_UPLOAD_TOKEN)
    values: dict[str, Any] = {
        "upload_tokens": [{"env": TEST_UPLOAD_TOKEN_ENV}],
        "kafka_bootstrap": bootstrap, "topic_prefix": prefix, "http_host": "127.0.0.1", "http_port": 0,
        "pull_enabled": False, "session_repull_seconds": 0, "kafka_ack_timeout_seconds": 10,
        "notification_pull_timeout_seconds": 8,
        "polls_csv_url": "{service_url}/_sandbox/exports/polls/{entry_id}.csv" if sb else "",
    }
    values.update(overrides)
    return IngestSettings(**values)


@dataclass
class RunningIngest:
    service: IngestService
    base_url: str

    @property
    def notification_url(self) -> str:
        return f"{self.base_url}/ingest/kaltura/notification"

    @property
    def upload_url(self) -> str:
        return f"{self.base_url}/ingest/kaltura/reports"


@asynccontextmanager
async def running_ingest(
    settings: IngestSettings, tenants: TenantsConfig, sb: RunningSandbox | None
) -> AsyncIterator[RunningIngest]:
    """Start the service and its HTTP server; stop both whatever happens."""

    def factory(event: EventConfig) -> KalturaSource:
        partner = tenants.kaltura_partners[event.partner_id]
        clock = sb.now if sb is not None else None
        client = client_for(event.partner_id, partner, settings)
        return KalturaPullSource(client, settings, clock) if clock else KalturaPullSource(client, settings)

    service = IngestService(settings, tenants, factory)
    await service.start()
    try:
        runner, port = await serve(service, "127.0.0.1", 0)
        try:
            yield RunningIngest(service, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()
    finally:
        await service.stop()


def metric(service: IngestService, name: str, **labels: str) -> float:
    value = service.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@dataclass
class IngestProcess:
    """``kmsync ingest`` as a child process (a replica that a test can kill -9)."""

    process: asyncio.subprocess.Process
    log_path: Path
    base_url: str

    async def metric(self, client: httpx.AsyncClient, name: str, **labels: str) -> float:
        """The sum of a metric's samples (with these labels) on the process's /metrics page."""
        return sample_sum((await client.get(f"{self.base_url}/metrics")).text, name, labels)

    def kill(self) -> None:
        """SIGKILL: no graceful path (no LeaveGroup, no end of the open transaction)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)


def _log_file(work_dir: Path) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir / "ingest.log"


@asynccontextmanager
async def ingest_process(env: dict[str, str], work_dir: Path, within: float = 60.0) -> AsyncIterator[IngestProcess]:
    """Start ``kmsync ingest`` with ``env`` (KMSYNC_* settings) on an ephemeral port; killed at exit."""
    log_path = _log_file(work_dir)
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from kmsync_ingest.cli import main; sys.exit(main(sys.argv[1:]))",
            env={**os.environ, "KMSYNC_HTTP_HOST": "127.0.0.1", "KMSYNC_HTTP_PORT": "0", **env},
            stdout=log_file, stderr=log_file,
        )
    try:
        def listening() -> str | None:
            if process.returncode is not None:
                raise AssertionError(f"kmsync ingest exited {process.returncode}: {log_path.read_text()[-3000:]}")
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
            return found.group(1) if found else None

        port = await wait_for(listening, within=within, what="kmsync ingest to listen")
        yield IngestProcess(process, log_path, f"http://127.0.0.1:{port}")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()


def tenants_file(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path
