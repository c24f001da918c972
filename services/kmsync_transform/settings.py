"""Transform's settings: the common KMSYNC_* ones plus its own (env KMSYNC_<FIELD>)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from kmsync_config.settings import CommonSettings
from kmsync_contracts.groups import TRANSFORM_APP_ID
from kmsync_contracts.seed import ENGAGEMENT_OBJECT_DEDUPE_FIELDS, POLLS_OBJECT_DEDUPE_FIELDS
from kmsync_transform.engagement import RateScale

#: lean: keyed.py's steps on a confluent-kafka loop: exactly-once, partitioned state in quixstreams' changelog
#: format, N replicas, at about half the quix engine's CPU per record (engine_lean.py, issue #22; docs/decisions.md).
#: quix: the quixstreams application (exactly-once, partitioned state, N replicas; engine_quix.py); either engine
#: takes over the other's state.
#: worker: the single-replica aiokafka worker (app.py), at-least-once, its own state topic.
Engine = Literal["lean", "quix", "worker"]


class TransformSettings(CommonSettings):
    #: Which runtime runs the pure modules (README.md: "The lean engine", "The quix engine", "The aiokafka worker").
    transform_engine: Engine = "lean"
    #: Consumer group whose committed offsets say how far transform has read (after topic_prefix).
    transform_app_id: str = Field(default=TRANSFORM_APP_ID, min_length=1)
    #: Partitions of transform's state topic (<prefix>transform.state.v1), used when it is created.
    transform_partitions: int = Field(default=6, ge=1)
    #: Most input records one batch processes (one round of acknowledgements and one commit per batch).
    transform_batch_max_records: int = Field(default=500, ge=1, le=100_000)
    #: How long an idle poll waits for input before the loop looks at the stop flag again (worker);
    #: the lean and quix engines' fetch.wait.max.ms.
    transform_batch_wait_ms: int = Field(default=100, ge=1, le=10_000)
    #: lean and quix engines: how often the transaction (outputs, state changelogs, input offsets) is committed.
    #: Consumers read read_committed, so this is also the latency an operation gains.
    transform_commit_interval_ms: int = Field(default=500, ge=10, le=60_000)
    #: lean and quix engines: the longest one consumer poll waits for records. quixstreams commits a due checkpoint
    #: only after a poll returns, so with nothing more arriving a poll of its default 1 s held each
    #: checkpoint, and every operation of a live burst, up to 1 s longer (issue #18: section 3's
    #: ~1 s between transform's output and the sink reading it).
    transform_poll_timeout_ms: int = Field(default=100, ge=10, le=5_000)
    #: lean and quix engines: how long a piece of state lives after the last input record (Kafka timestamp) that
    #: wrote it; an event's state is gone this long after its last record. Longer than any gap between
    #: an event's records, including late reports and upstream replays (default 30 days).
    transform_state_retention_seconds: int = Field(default=30 * 86_400, ge=1)
    #: lean and quix engines: local RocksDB directory; empty = a fresh temporary directory per process (state is
    #: recovered from the changelog topics at start, bounded by the retention).
    transform_state_dir: Path | None = None
    #: lean and quix engines: the state changelogs roll a segment this often (Kafka's segment.ms), so the log
    #: cleaner can drop the records of expired state (it never cleans the active segment; the broker's
    #: default is 7 days). Recovery reads at most about this much history beyond the live state.
    transform_changelog_segment_ms: int = Field(default=600_000, ge=1_000)
    #: lean and quix engines: how long an expired entry's tombstone stays on a changelog after compaction
    #: (Kafka's delete.retention.ms), for a recovery that had already read the entry.
    transform_changelog_delete_retention_ms: int = Field(default=600_000, ge=1_000)
    #: lean and quix engines: the broker aborts a transaction left open this long (a killed replica's); readers
    #: wait at an open transaction, so this bounds how long a kill delays the operations behind it.
    transform_transaction_timeout_ms: int = Field(default=10_000, ge=1_000, le=900_000)
    #: lean and quix engines: this replica's name, stable across its restarts and unique among live replicas (the pod's
    #: name; the chaos harness's process name). Set: the transactional id is <prefix><app id>-<instance id>, and
    #: at start the replica ends any transaction its previous incarnation left open (left_open.py,
    #: docs/reference/streaming.md §3.1). Empty: quixstreams' random id per process (nothing is ended).
    transform_instance_id: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9._-]*$")
    #: lean and quix engines: how often a thread of its own reads the last stable offset and log end of the input
    #: partitions, looking for a hanging transaction (hanging_check.py, docs/reference/streaming.md §3.1); 0: off.
    transform_hanging_check_seconds: float = Field(default=30.0, ge=0)
    #: lean and quix engines: a watched partition (inputs, and the topics transform writes) whose last stable offset
    #: stays unmoved behind its log end this long holds a hanging transaction: longer than ingest's
    #: transaction.timeout.ms (60 s) and transform's own (transform_transaction_timeout_ms) plus the broker's abort scan
    #: (10 s), plus a margin.
    transform_hanging_after_seconds: float = Field(default=120.0, gt=0)
    #: lean and quix engines: a replica that stops heartbeating loses its partitions after this long.
    transform_session_timeout_ms: int = Field(default=10_000, ge=3_000, le=300_000)
    #: How engagement rates are read: auto (percent when any rate of a snapshot is above 1).
    rate_scale: RateScale = "auto"
    #: The custom objects' dedupe fields (default: the contract's, kmsync_contracts.seed).
    engagement_dedupe_fields: tuple[str, ...] = ENGAGEMENT_OBJECT_DEDUPE_FIELDS
    polls_dedupe_fields: tuple[str, ...] = POLLS_OBJECT_DEDUPE_FIELDS
    #: A poll slot a moved poll left (Kaltura renumbered the session's polls) is written null, which clears it in
    #: Marketo; false leaves it out of the record, and the moved poll's old copy stays in that slot. Whether a null
    #: clears a custom object field is UNCONFIRMED (docs/reference/marketo-api.md §5.1 says so for leads).
    polls_clear_empty_slots: bool = True

    def transformer_options(self) -> dict[str, Any]:
        """The Transformer's keyword arguments these settings decide: every engine's, and `kmsync reconcile --fix`'s
        (which must make the operations the running transform makes)."""
        return {"rate_scale": self.rate_scale, "engagement_dedupe_fields": self.engagement_dedupe_fields,
                "polls_dedupe_fields": self.polls_dedupe_fields,
                "polls_clear_empty_slots": self.polls_clear_empty_slots}
