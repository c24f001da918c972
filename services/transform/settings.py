"""Transform's settings: the common KMSYNC_* ones plus its own (env KMSYNC_<FIELD>)."""

from __future__ import annotations

from pydantic import Field

from kmsync_config.settings import CommonSettings
from kmsync_contracts.seed import ENGAGEMENT_OBJECT_DEDUPE_FIELDS, POLLS_OBJECT_DEDUPE_FIELDS
from transform.engagement import RateScale


class TransformSettings(CommonSettings):
    #: Consumer group whose committed offsets say how far transform has read (after topic_prefix).
    transform_app_id: str = Field(default="kmsync-transform", min_length=1)
    #: Partitions of transform's state topic (<prefix>transform.state.v1), used when it is created.
    transform_partitions: int = Field(default=6, ge=1)
    #: Most input records one batch processes (one round of acknowledgements and one commit per batch).
    transform_batch_max_records: int = Field(default=500, ge=1, le=100_000)
    #: How long an idle poll waits for input before the loop looks at the stop flag again.
    transform_batch_wait_ms: int = Field(default=100, ge=1, le=10_000)
    #: How engagement rates are read: auto (percent when any rate of a snapshot is above 1).
    rate_scale: RateScale = "auto"
    #: The custom objects' dedupe fields (default: the contract's, kmsync_contracts.seed).
    engagement_dedupe_fields: tuple[str, ...] = ENGAGEMENT_OBJECT_DEDUPE_FIELDS
    polls_dedupe_fields: tuple[str, ...] = POLLS_OBJECT_DEDUPE_FIELDS
