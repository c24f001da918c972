"""One operation the sink has read and not yet decided: where it came from and how often it was tried."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from kmsync_contracts.marketo_ops import MarketoOperation


class Source(NamedTuple):
    """The Kafka position of a record: what the offset tracker and dead letters refer to (a named
    tuple: ordered, immutable, and built for every record read at a fraction of a frozen dataclass's
    cost, issue #22)."""

    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class PendingOp:
    source: Source
    op: MarketoOperation
    #: Encoded size in bytes (window byte cap).
    size: int
    #: Monotonic time the sink first saw it (window age).
    arrived: float
    #: Attempts already made (0 before the first call).
    attempts: int = 0
    #: Monotonic time before which it is not retried.
    not_before: float = 0.0
    #: The record key as read (dead letters keep it).
    key: str | None = None
    #: A custom activity whose write may have been applied, out of attempts: its next try only
    #: verifies (found: written; absent: dead-lettered as not applied).
    final_check: bool = False
    #: The code of the last ambiguous answer to this custom activity's write.
    uncertain_code: str | None = None
    #: A custom object upsert's record key (planner.object_key), worked out once: the lane gate and the
    #: planner both need it (planner.record_key; issue #22). A cache of ``op``'s: not compared, not shown.
    record_key: tuple[str, tuple[object, ...]] | None = field(default=None, compare=False, repr=False)

    @property
    def munchkin_id(self) -> str:
        return self.op.munchkin_id
