"""The faust-streaming app: two stages, three tables, /metrics and /healthz.

Stage 1 (agent `route`) reads the three kaltura.* topics as raw bytes, so a record that does not
decode is dead-lettered rather than crashing the stream, and re-keys good records onto the internal
topic transform.routed.v1 (see routing.py). Stage 2 (agent `transform`) reads that topic, applies
the pure Transformer to staged views of the tables, sends the operations to marketo.ops.v1 keyed
by munchkin id and dead letters to transform.dlq.v1, waits for Kafka's acknowledgements, and only
then writes the tables (staged.py). Processing guarantee: README.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel, TypeAdapter

from kmsync_config.tenants import TenantsConfig
from kmsync_contracts.codecs import ContractError, decode_as, encode
from kmsync_contracts.topics import DAY_MS, MARKETO_OPS, TRANSFORM_DLQ, TopicSpec
from kmsync_kafka.clients import ensure_topics, topic_name
from transform.dead_letters import Reason, SourceRef, dead_letter
from transform.emails import email_hash
from transform.metrics import TransformMetrics
from transform.routing import INPUTS, ROUTED_ADAPTER, UNDECODABLE, route
from transform.settings import TransformSettings
from transform.staged import StagedMapping
from transform.transformer import Transformer, TransformState

log = logging.getLogger("kmsync.transform")

#: Transform's own internal topic: routed records keyed by the state they touch (not a contract).
ROUTED = TopicSpec(
    "transform.routed.v1", "state key (member, lead or session)", 6, "delete", 7 * DAY_MS,
    cast(TypeAdapter[object], ROUTED_ADAPTER), "Transform stage 1 → stage 2",
)
TABLES = ("statuses", "activity_ledger", "poll_slots", "poll_answers")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TransformApp:
    app: faust.App
    settings: TransformSettings
    metrics: TransformMetrics

    def topic_names(self) -> dict[str, str]:
        p = self.settings.topic_prefix
        names = {spec.name: topic_name(spec, p) for spec in (*INPUTS, MARKETO_OPS, TRANSFORM_DLQ)}
        names[ROUTED.name] = topic_name(ROUTED, p)
        return names


def changelog_specs(settings: TransformSettings) -> list[TopicSpec]:
    """The tables' changelog topics, named as faust names them: <app id>-<table>-changelog."""
    return [
        TopicSpec(f"{settings.transform_app_id}-{table}-changelog", "state key", settings.transform_partitions,
                  "compact", -1, cast(TypeAdapter[object], TypeAdapter(object)), f"table {table}")
        for table in TABLES
    ]


async def ensure_transform_topics(settings: TransformSettings) -> None:
    """Create the catalogue topics transform reads and writes, its internal topic and its changelogs.

    The changelogs are created here, before the worker subscribes: when faust creates them itself a
    just-created topic can be missing from the first metadata, faust then ignores it in the assignment
    and the table silently drops that partition's state (seen with poll_answers).
    """
    await ensure_topics(settings.kafka_bootstrap, [*INPUTS, MARKETO_OPS, TRANSFORM_DLQ], settings.topic_prefix)
    internal = [ROUTED, *changelog_specs(settings)]
    await ensure_topics(settings.kafka_bootstrap, internal, settings.topic_prefix,
                        partitions=settings.transform_partitions)
    await wait_for_metadata(settings, [*INPUTS, *internal])


async def wait_for_metadata(settings: TransformSettings, specs: list[TopicSpec], within: float = 30.0) -> None:
    """Until the broker's metadata lists every topic with at least one partition."""
    names = {topic_name(s, settings.topic_prefix) for s in specs}
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await probe.start()
    try:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            await probe._client.force_metadata_update()
            missing = {n for n in names if not probe.partitions_for_topic(n)}
            if not missing:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topics missing from the broker metadata: {sorted(missing)}")
            await asyncio.sleep(0.1)  # metadata propagation has no notification to wait on
    finally:
        await probe.stop()


def build_app(
    settings: TransformSettings,
    tenants: TenantsConfig,
    *,
    clock: Callable[[], datetime] = _now,
    metrics: TransformMetrics | None = None,
) -> TransformApp:
    metrics = metrics or TransformMetrics()
    prefix = settings.topic_prefix
    app = faust.App(
        f"{prefix}{settings.transform_app_id}",
        broker=[f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",")],
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.transform_partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        store="memory://",
        datadir=str(settings.transform_data_dir),
        web_enabled=True,
        web_host=settings.http_host,
        web_port=settings.http_port,
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        topic_allow_declare=True,
        topic_disable_leader=True,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    inputs = app.topic(*(topic_name(s, prefix) for s in INPUTS), **raw)
    routed_topic = app.topic(topic_name(ROUTED, prefix), partitions=settings.transform_partitions, **raw)
    ops_topic = app.topic(topic_name(MARKETO_OPS, prefix), **raw)
    dlq_topic = app.topic(topic_name(TRANSFORM_DLQ, prefix), **raw)
    spec_by_topic = {topic_name(s, prefix): s for s in INPUTS}
    tables = {
        name: app.Table(name, default=None, partitions=settings.transform_partitions,
                        key_type=str)
        for name in TABLES
    }

    async def send(topic: Any, key: str, value: BaseModel) -> Awaitable[Any]:
        return cast(Awaitable[Any], await topic.send(key=key.encode(), value=encode(value)))

    async def route_one(event: Any) -> None:
        msg = event.message
        source = SourceRef(topic=msg.topic, partition=msg.partition, offset=msg.offset,
                           key=msg.key.decode("utf-8", "replace") if msg.key else None)
        spec = spec_by_topic[msg.topic]
        result = route(spec, msg.value or b"", source, tenants, clock())
        metrics.routed(spec.name, result)
        if result.dead_letter is not None:
            await (await send(dlq_topic, source.key or "", result.dead_letter))
            log.info("dead-lettered %s %s:%s: %s", spec.name, msg.partition, msg.offset,
                     result.dead_letter.reason_code)
        else:
            assert result.key is not None and result.routed is not None
            await (await send(routed_topic, result.key, result.routed))

    # faust acks an event in a `finally` even when the agent is cancelled in the middle of it
    # (streaming.md §2.2): on shutdown that committed records whose outputs were never sent. Each
    # event's work runs as its own task that a stop does not cancel; the agent waits for it before
    # letting the cancellation (and with it faust's ack) through.
    @app.agent(inputs)
    async def route_records(stream: Any) -> None:
        async for event in stream.events():
            await uncancellable(route_one(event))

    async def transform_one(event: Any) -> None:
        msg = event.message
        try:
            routed = decode_as(ROUTED_ADAPTER, msg.value or b"", ROUTED.name)
        except ContractError as exc:  # only if another writer used our internal topic
            source = SourceRef(topic=msg.topic, partition=msg.partition, offset=msg.offset)
            dl = dead_letter(Reason.UNDECODABLE, str(exc), source, msg.value or b"", clock())
            metrics.routed(ROUTED.name, _undecodable(dl))
            await (await send(dlq_topic, "", dl))
            return
        staged = {name: StagedMapping(table) for name, table in tables.items()}
        transformer = Transformer(
            tenants,
            TransformState(staged["statuses"], staged["activity_ledger"],
                           staged["poll_slots"], staged["poll_answers"]),
            rate_scale=settings.rate_scale,
            engagement_dedupe_fields=settings.engagement_dedupe_fields,
            polls_dedupe_fields=settings.polls_dedupe_fields,
            clock=clock,
        )
        result = transformer.apply(routed)
        pending = [await send(ops_topic, op.munchkin_id, op) for op in result.ops]
        pending += [await send(dlq_topic, routed.source.key or "", dl) for dl in result.dead_letters]
        if pending:
            await asyncio.gather(*pending)  # acknowledged before the state moves on
        for view in staged.values():
            view.commit()
        metrics.stepped(result)
        if result.regressions or result.ledger_hits:
            log.debug("dropped for %s: %d regressions, %d ledger hits", email_hash(routed.email),
                      result.regressions, result.ledger_hits)

    @app.agent(routed_topic)
    async def transform_records(stream: Any) -> None:
        async for event in stream.events():
            await uncancellable(transform_one(event))

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "app": app.conf.id})

    return TransformApp(app, settings, metrics)


async def uncancellable(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` to the end even if the caller is cancelled meanwhile; then re-raise the cancel."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def _undecodable(dl: Any) -> Any:
    from transform.routing import RouteResult

    return RouteResult(UNDECODABLE, dead_letter=dl)
