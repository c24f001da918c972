"""Builders for the sink's tests: operations as transform emits them, wrapped as pending records."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kmsync_contracts import encode
from kmsync_contracts.marketo_ops import (
    CustomActivity,
    CustomObjectUpsert,
    LeadUpsert,
    MarketoOperation,
    ProgramMemberStatus,
)
from kmsync_contracts.seed import ENGAGEMENT_ACTIVITY_API_NAME, ENGAGEMENT_OBJECT_API_NAME, STATUS_STEPS
from kmsync_sink.pending import PendingOp, Source
from marketo_sandbox.testing import SandboxHandle

MUNCHKIN = "111-AAA-111"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class OpFactory:
    def __init__(self) -> None:
        self._ids = itertools.count()
        self._offsets = itertools.count()

    def _base(self, email: str, munchkin: str, op_id: str | None) -> dict[str, Any]:
        n = next(self._ids)
        return {
            "op_id": op_id or f"op-{n}",
            "munchkin_id": munchkin,
            "partner_id": 1,
            "virtual_event_id": 2,
            "email": email,
            "source_time": T0,
            "emitted_at": T0,
        }

    def lead(self, email: str, munchkin: str = MUNCHKIN, op_id: str | None = None, **fields: Any) -> LeadUpsert:
        return LeadUpsert(**self._base(email, munchkin, op_id), fields=fields)

    def status(self, email: str, status: str = "Registered", program: int = 1001,
               munchkin: str = MUNCHKIN, op_id: str | None = None) -> ProgramMemberStatus:
        return ProgramMemberStatus(**self._base(email, munchkin, op_id), program_id=program,
                                   status_name=status, step=STATUS_STEPS[status])

    def obj(self, email: str, entry: str = "1_abc", munchkin: str = MUNCHKIN, op_id: str | None = None,
            **fields: Any) -> CustomObjectUpsert:
        return CustomObjectUpsert(**self._base(email, munchkin, op_id), object_name=ENGAGEMENT_OBJECT_API_NAME,
                                  dedupe_fields=("entry_id", "email"),
                                  record={"entry_id": entry, "email": email, **fields})

    def activity(self, email: str, entry: str = "1_abc", munchkin: str = MUNCHKIN,
                 op_id: str | None = None, type_name: str = ENGAGEMENT_ACTIVITY_API_NAME) -> CustomActivity:
        return CustomActivity(**self._base(email, munchkin, op_id), activity_type=type_name,
                              primary_attribute_value=entry, activity_date=T0,
                              attributes={"entry_name": "Keynote", "plays": 2})

    def pending(self, op: MarketoOperation, arrived: float = 0.0, partition: int = 0,
                topic: str = "marketo.ops.v1") -> PendingOp:
        return PendingOp(Source(topic, partition, next(self._offsets)), op, len(encode(op)), arrived,
                         key=op.munchkin_id)


def count_validations(monkeypatch: pytest.MonkeyPatch, model: Any) -> list[Any]:
    """Every validation of ``model`` from now on (its validator wrapped, not replaced): the fast paths' tests
    check what was built without one."""
    validator = model.__pydantic_validator__
    calls: list[Any] = []

    class Counting:
        def validate_python(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return validator.validate_python(*args, **kwargs)

    monkeypatch.setattr(model, "__pydantic_validator__", Counting())
    return calls


@pytest.fixture
def ops() -> OpFactory:
    return OpFactory()


def sink_process_env(sb: SandboxHandle, munchkin: str, bootstrap: str, prefix: str, group: str, tmp_path: Path,
                     **settings: str) -> dict[str, str]:
    """The environment of a `kmsync sink` process writing to instance ``munchkin`` of ``sb`` (its tenants
    file written under ``tmp_path``; the secret is the test's KMSYNC_TEST_MARKETO_SECRET).
    ``settings``: sink settings by field name (``window_max_age_seconds="0.3"``)."""
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump({"marketo_instances": {"alpha": {
        "munchkin_id": munchkin, "endpoint": sb.instance_url(munchkin), "client_id": sb.client_id,
        "client_secret": {"env": "KMSYNC_TEST_MARKETO_SECRET"}}}, "events": []}))
    return {**os.environ, "KMSYNC_KAFKA_BOOTSTRAP": bootstrap, "KMSYNC_TOPIC_PREFIX": prefix,
            "KMSYNC_TENANTS_FILE": str(tenants_file), "KMSYNC_HTTP_HOST": "127.0.0.1", "KMSYNC_HTTP_PORT": "0",
            "KMSYNC_SINK_GROUP_ID": group, **{f"KMSYNC_{name.upper()}": value for name, value in settings.items()}}


async def sink_process(env: dict[str, str]) -> asyncio.subprocess.Process:
    """`kmsync sink` as a process of its own (its output discarded)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from kmsync_cli.main import main; sys.exit(main(['sink']))",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def ensure_dead(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
