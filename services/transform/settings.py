"""Transform's settings: the common KMSYNC_* ones plus its own (env KMSYNC_<FIELD>)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from kmsync_config.settings import CommonSettings
from kmsync_contracts.topics import ATTENDEE_STATUS
from transform.engagement import RateScale
from transform.transformer import ENGAGEMENT_DEDUPE_FIELDS, POLLS_DEDUPE_FIELDS


class TransformSettings(CommonSettings):
    #: faust app id: consumer group and prefix of the tables' changelog topics (after topic_prefix).
    transform_app_id: str = Field(default="kmsync-transform", min_length=1)
    #: at_least_once (default) with staged state and the ledger making replays safe. exactly_once is
    #: faust's, kept for experiments: it does not hold up for re-keyed outputs (README.md).
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    #: Partitions of transform's internal topic and its tables' changelogs.
    transform_partitions: int = Field(default=ATTENDEE_STATUS.partitions, ge=1)
    #: How engagement rates are read: auto (percent when any rate of a snapshot is above 1).
    rate_scale: RateScale = "auto"
    engagement_dedupe_fields: tuple[str, ...] = ENGAGEMENT_DEDUPE_FIELDS
    polls_dedupe_fields: tuple[str, ...] = POLLS_DEDUPE_FIELDS
    #: faust's data directory (table stores are in memory and rebuilt from changelogs).
    transform_data_dir: Path = Path(".kmsync/transform")
