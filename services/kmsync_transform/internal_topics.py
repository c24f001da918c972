"""Transform's internal topics, named as quixstreams names them, so the quix and the lean engine share them.

quixstreams 3.28.1 names an application's internal topics ``<type>__<group>--<stream>--<suffix>``
(``quixstreams.models.topics.manager.TopicManager._internal_name``): a store's changelog is
``changelog__<group>--<input topic>--default``, the polls' group_by topic
``repartition__<group>--<polls topic>--session``, and the store of what is read from it
``changelog__<group>--repartition.<polls topic>.session--default`` (the repartition topic's name nested).
Changelogs are compacted, with the compaction settings of ``tune_changelogs``; each has its stream's partitions.
The names of the topics both engines read and write are here too (``input_specs``, ``destination_topics``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from kmsync_contracts.topics import (
    MARKETO_OPS,
    MARKETO_OPS_BACKFILL,
    POLL_RESPONSES,
    TRANSFORM_DECISIONS,
    TRANSFORM_DLQ,
    TRANSFORM_INPUTS,
    TopicSpec,
)
from kmsync_kafka.clients import topic_name
from kmsync_transform.settings import TransformSettings

log = logging.getLogger("kmsync.transform")

#: The polls' group_by step's name (quixstreams names its topic repartition__<group>--<topic>--<name>).
SESSION_GROUP = "session"
#: The store name quixstreams gives a dataframe's state.
STORE = "default"
#: Compaction of the state changelogs. quixstreams creates them compacted with the broker's defaults: a 7-day
#: segment, and the log cleaner never touches the active segment, so every expired entry and its tombstone would
#: stay for days and a replica recovering its state would read them all. The segment time and tombstone time come
#: from the settings; cleaning starts at 10 % dirty. (Kafka topic configs:
#: https://kafka.apache.org/documentation/#topicconfigs)
CHANGELOG_MIN_CLEANABLE_DIRTY_RATIO = "0.1"
#: How long an admin call may take.
ADMIN_TIMEOUT_S = 30.0


def input_specs(prefix: str) -> dict[str, TopicSpec]:
    """Input topic name → its catalogue spec (the three Kaltura inputs), as both engines read them."""
    return {topic_name(s, prefix): s for s in TRANSFORM_INPUTS}


def destination_topics(prefix: str) -> dict[str, str]:
    """keyed.py's destination → the topic name both engines write it to."""
    return {"ops": topic_name(MARKETO_OPS, prefix),
            "dlq": topic_name(TRANSFORM_DLQ, prefix),
            "decisions": topic_name(TRANSFORM_DECISIONS, prefix),
            "ops_backfill": topic_name(MARKETO_OPS_BACKFILL, prefix)}


def changelog_name(group_id: str, stream: str) -> str:
    return f"changelog__{group_id}--{stream}--{STORE}"


def nested_name(group_id: str, internal: str) -> str:
    """An internal topic's name inside another's, as quixstreams writes it (``TopicManager._format_nested_name``):
    ``repartition__<group>--<topic>--session`` → ``repartition.<topic>.session``."""
    if f"__{group_id}--" in internal:
        return internal.replace(f"__{group_id}", "").replace("--", ".")
    return internal


@dataclass(frozen=True)
class LeanTopics:
    """The topic names one transform group reads and writes."""

    group_id: str
    #: Input topic name → its catalogue spec (the three Kaltura inputs).
    spec_by_topic: dict[str, TopicSpec]
    #: The polls' input topic.
    polls: str
    #: The polls' repartition topic (keyed by session); None when the polls' input has one partition, which
    #: quixstreams re-keys in place (``StreamingDataFrame._single_partition_groupby``): every session is there.
    repartition: str | None
    #: keyed.py's destination → topic name.
    destinations: dict[str, str]

    @classmethod
    def of(cls, settings: TransformSettings, polls_partitions: int) -> LeanTopics:
        prefix = settings.topic_prefix
        group = f"{prefix}{settings.transform_app_id}"
        polls = topic_name(POLL_RESPONSES, prefix)
        repartition = None if polls_partitions == 1 else f"repartition__{group}--{polls}--{SESSION_GROUP}"
        return cls(group, input_specs(prefix), polls, repartition, destination_topics(prefix))

    def subscribed(self) -> list[str]:
        return [*self.spec_by_topic, *([self.repartition] if self.repartition else [])]

    def changelog_of(self, topic: str) -> str | None:
        """The changelog of the store kept for ``topic``'s partitions (the stream quixstreams names it after);
        None for the polls' input when they are repartitioned (it keeps no state then)."""
        if topic == self.repartition:
            return changelog_name(self.group_id, nested_name(self.group_id, topic))
        if topic == self.polls:
            return None if self.repartition else changelog_name(self.group_id, f"{topic}--groupby--{SESSION_GROUP}")
        return changelog_name(self.group_id, topic)

    def stateful(self) -> list[str]:
        """The topics whose partitions keep a store."""
        return [t for t in self.subscribed() if self.changelog_of(t) is not None]


def changelog_config(settings: TransformSettings) -> dict[str, str]:
    return {"segment.ms": str(settings.transform_changelog_segment_ms),
            "delete.retention.ms": str(settings.transform_changelog_delete_retention_ms),
            "min.cleanable.dirty.ratio": CHANGELOG_MIN_CLEANABLE_DIRTY_RATIO}


def create_internal_topics(settings: TransformSettings, topics: LeanTopics) -> None:
    """The repartition topic (the polls' partitions and retention) and every store's changelog (compacted, its
    stream's partitions), those missing; the compaction settings on every changelog (``tune_changelogs``)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    inputs = partitions_of(admin, list(topics.spec_by_topic))
    streams = dict(inputs)
    if topics.repartition is not None:  # its partitions are the polls': not read back (a new topic may not show yet)
        streams[topics.repartition] = inputs[topics.polls]
        _create(admin, [NewTopic(topics.repartition, num_partitions=inputs[topics.polls], replication_factor=1,
                                 config=POLL_RESPONSES.config())])
    config = {"cleanup.policy": "compact", **changelog_config(settings)}
    changelogs = {name: streams[source] for source in topics.stateful() if (name := topics.changelog_of(source))}
    _create(admin, [NewTopic(name, num_partitions=n, replication_factor=1, config=config)
                    for name, n in changelogs.items()])
    # Subscribed and recovered from at once: a topic the broker's metadata does not show yet is "not available"
    # to a consumer, an error that ended transform at start.
    partitions_of(admin, [*changelogs, *([topics.repartition] if topics.repartition else [])])
    tune_changelogs(settings, admin)


def polls_partitions(settings: TransformSettings) -> int:
    """The polls' input's partitions."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    polls = topic_name(POLL_RESPONSES, settings.topic_prefix)
    return partitions_of(admin, [polls])[polls]


def partitions_of(admin: AdminClient, names: list[str], within: float = ADMIN_TIMEOUT_S) -> dict[str, int]:
    """The topics' partition counts, read again while one does not show yet: a broker's metadata can lag behind a
    topic created a moment before (the same lag engine_quix.build_retrying works around)."""
    deadline = time.monotonic() + within
    while True:
        shown = {t: len(m.partitions) for t, m in admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics.items()
                 if t in names and m.error is None and m.partitions}
        if len(shown) == len(set(names)):
            return shown
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not in the broker's metadata after {within:.0f} s: "
                               f"{sorted(set(names) - set(shown))}")
        time.sleep(0.5)


def _create(admin: AdminClient, new: list[NewTopic]) -> None:
    """Create the topics; one that exists already is left as it is (quixstreams' or another replica's)."""
    for future in admin.create_topics(new).values() if new else ():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def tune_changelogs(settings: TransformSettings, admin: AdminClient | None = None) -> None:
    """Set the compaction settings on this group's changelog topics (quixstreams creates them without)."""
    admin = admin or AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    prefix = f"changelog__{settings.topic_prefix}{settings.transform_app_id}--"
    names = [t for t in admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics if t.startswith(prefix)]
    config = changelog_config(settings)
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=entries) for t in names]
    if resources:
        for future in admin.incremental_alter_configs(resources).values():
            future.result(timeout=ADMIN_TIMEOUT_S)
    log.info("changelog compaction set on %d topics: %s", len(resources), config)
