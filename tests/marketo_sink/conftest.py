"""Builders for the sink's tests: operations as transform emits them, wrapped as pending records."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

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


@pytest.fixture
def ops() -> OpFactory:
    return OpFactory()
