"""Ingest leaves no Kafka client open when a step fails or is cancelled: the watermark load (a take-over against a
broker that is down, a released partition's load cancelled) and the service's stop (its release raising or
cancelled). An aiokafka client never stopped is an ERROR "Unclosed AIOKafkaConsumer" whenever the garbage collector
finalises it, in whatever runs then (kmsync_testing.leaks)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from kmsync_config.tenants import TenantsConfig
from kmsync_ingest.metrics import IngestMetrics
from kmsync_ingest.publisher import KafkaUnavailable, Publisher
from kmsync_ingest.service import IngestService
from kmsync_ingest.watermarks import WatermarkStore
from kmsync_testing.ingest import settings_for
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.leaks import no_unclosed_kafka_clients
from kmsync_testing.processes import free_port


class Stuck:
    """An awaitable step that never ends: ``reached`` is set once something awaits it (then cancel that)."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.reached.set()
        await asyncio.get_running_loop().create_future()


async def test_a_load_against_a_broker_that_is_down_leaves_no_consumer_open() -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    with no_unclosed_kafka_clients():
        store = WatermarkStore(Publisher(down, "down.", IngestMetrics()), load_timeout_seconds=10)
        with pytest.raises(KafkaUnavailable):
            await store.load()
        del store


def consumers_made(monkeypatch: pytest.MonkeyPatch) -> list[weakref.ref[AIOKafkaConsumer]]:
    """Every AIOKafkaConsumer created from now on (weakly: the leaks check still finalises what is dropped)."""
    made: list[weakref.ref[AIOKafkaConsumer]] = []
    real_init = AIOKafkaConsumer.__init__

    def init(consumer: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> None:
        real_init(consumer, *args, **kwargs)
        made.append(weakref.ref(consumer))

    monkeypatch.setattr(AIOKafkaConsumer, "__init__", init)
    return made


async def test_a_cancelled_load_leaves_no_consumer_open(
    kafka_broker: KafkaBroker, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A released partition's take-over is cancelled in its load: here once both consumers have started. What the
    # cancelled load's frames still reference is not finalised by the leaks check, so each is looked at too.
    made = consumers_made(monkeypatch)
    publisher = Publisher(kafka_broker.bootstrap, topic_prefix, IngestMetrics())
    stuck = Stuck()
    with no_unclosed_kafka_clients():
        store = WatermarkStore(publisher, load_timeout_seconds=60)
        publisher.partitions_of = stuck  # type: ignore[method-assign]  # _read_all asks it after both started
        load = asyncio.create_task(store.load())
        await stuck.reached.wait()
        load.cancel()
        with pytest.raises(asyncio.CancelledError):
            await load
        del store, load, publisher
    assert len(made) == 2
    assert [consumer is None or consumer._closed for consumer in (ref() for ref in made)] == [True, True]


async def test_a_load_stops_each_consumer_even_when_stopping_the_other_raises(
    kafka_broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first consumer stopped raises once it is closed (or is cancelled): the other one is stopped all the same.
    real_stop = AIOKafkaConsumer.stop
    stopped: list[AIOKafkaConsumer] = []

    async def stop_then_raise(consumer: AIOKafkaConsumer) -> None:
        await real_stop(consumer)
        stopped.append(consumer)
        if len(stopped) == 1:
            raise RuntimeError("stopping a consumer failed")

    monkeypatch.setattr(AIOKafkaConsumer, "stop", stop_then_raise)
    down = f"127.0.0.1:{free_port()}"
    with no_unclosed_kafka_clients():
        store = WatermarkStore(Publisher(down, "down.", IngestMetrics()), load_timeout_seconds=10)
        with pytest.raises(RuntimeError, match="stopping a consumer failed"):
            await store.load()
        assert len(stopped) == 2
        stopped.clear()
        del store


async def _started_service(kafka_broker: KafkaBroker, topic_prefix: str) -> IngestService:
    """A replica of an ingest group (so with its coordination consumer), no event configured."""
    settings = settings_for(kafka_broker.bootstrap, topic_prefix, None, ingest_group="closing",
                            ingest_coordination_partitions=2)
    service = IngestService(settings, TenantsConfig(marketo_instances={}, events=[]), lambda event: None)  # type: ignore[arg-type,return-value]
    await service.start()
    assert service.coordinator is not None and await service.publisher.probe()
    return service


@pytest.mark.parametrize("how", ["raises", "cancelled"])
async def test_a_stop_whose_release_raises_or_is_cancelled_still_stops_the_consumer_and_the_producer(
    kafka_broker: KafkaBroker, topic_prefix: str, how: str
) -> None:
    with no_unclosed_kafka_clients():
        service = await _started_service(kafka_broker, topic_prefix)
        real, stuck = {"release": service.release}, Stuck()

        async def failing_release(partitions: set[int], grace_seconds: float | None = None) -> None:
            await real["release"](partitions, grace_seconds)  # the partitions' producers stopped: only what follows
            if how == "raises":
                raise RuntimeError("release failed")
            await stuck()

        service.release = failing_release  # type: ignore[method-assign]
        stopping = asyncio.create_task(service.stop(grace_seconds=5))
        if how == "cancelled":
            await stuck.reached.wait()
            stopping.cancel()
        with pytest.raises(asyncio.CancelledError if how == "cancelled" else RuntimeError):
            await stopping
        assert service.coordinator is None  # its consumer stopped
        assert not await service.publisher.probe()  # its producer stopped
        real.clear()
        del service, failing_release, stopping


async def test_a_release_stops_each_partitions_producer_even_when_stopping_another_raises(
    kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    service = await _started_service(kafka_broker, topic_prefix)
    owned = [service.owned[p] for p in sorted(service.owned)]
    assert len(owned) == 2 and all(o.publisher is not None and o.publisher.transactional_id for o in owned)
    publishers = [o.publisher for o in owned if o.publisher is not None]
    first = publishers[0]
    real_stop = first.stop

    async def stop_then_raise() -> None:
        await real_stop()
        raise RuntimeError("stopping a partition's producer failed")

    first.stop = stop_then_raise  # type: ignore[method-assign]
    real_quiesce, quiesced = service._quiesce, []

    async def recording_quiesce(o: Any, grace: float) -> None:
        quiesced.append((o.partition, o.publisher is not None and o.publisher._tx is not None))
        await real_quiesce(o, grace)

    service._quiesce = recording_quiesce  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="partition's producer failed"):
        await service.stop(grace_seconds=5)
    # The other partition still left whole: its pages settled (quiesced) while its producer still ran, then stopped.
    assert quiesced == [(o.partition, True) for o in owned]
    assert [p._tx for p in publishers] == [None, None]  # each transactional producer stopped
    assert service.owned == {}
    assert service.coordinator is None and not await service.publisher.probe()
