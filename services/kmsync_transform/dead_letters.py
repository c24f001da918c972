"""Why transform refuses a record (transform.dlq.v1): machine codes plus words a person can act on."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel, JsonValue

from kmsync_contracts.outcomes import DeadLetter
from kmsync_contracts.reasons import ReasonCode


class SourceRef(BaseModel):
    """Where an input record was read (for the dead letter and for replay)."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None


def payload_of(raw: bytes | str | BaseModel) -> JsonValue:
    """The original record: decoded JSON when it parses, else the raw text."""
    if isinstance(raw, BaseModel):
        return json.loads(raw.model_dump_json())
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except ValueError:
        return text


def dead_letter(
    reason_code: ReasonCode, reason: str, source: SourceRef, raw: bytes | str | BaseModel, now: datetime
) -> DeadLetter:
    return DeadLetter(
        stage="transform",
        reason_code=reason_code.value,
        reason=reason,
        source_topic=source.topic,
        source_partition=source.partition,
        source_offset=source.offset,
        source_key=source.key,
        payload=payload_of(raw),
        failed_at=now,
    )
