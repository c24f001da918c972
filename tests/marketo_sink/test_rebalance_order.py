"""The sink's rebalance choreography (service.py), without a broker: what aiokafka does around its
callbacks is played by calling them in its order.

aiokafka (0.14, ``GroupCoordinator._on_join_complete``) hands a new assignment to ``getmany`` before it
calls ``on_partitions_assigned``; a batch of the new partitions can therefore be polled while the
assignment's ledger catch-up (the previous owner's intents and outcomes) is still reading; the catch-up
runs on its own task, so the callback returns at once (aiokafka sends no heartbeats during a callback). Routing it
then could send a custom activity the previous owner already sent (insert-only,
docs/reference/marketo-api.md §7.1); dropping it would lose it (its positions are not reset again, and
the offset tracker would start past it). And a revocation must stop every leaving worker within one
drain timeout, or the group hands their partitions on while this replica still sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from kmsync_sink.pending import PendingOp
from kmsync_sink.service import MarketoSink
from kmsync_sink.settings import SinkSettings

from .test_instance_settings import tenants

OPS = "marketo.ops.v1"
TP = TopicPartition(OPS, 0)


class _SlowCatchUp:
    """A ledger reader whose catch-up lasts until the test lets it finish (or fails)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.finish = asyncio.Event()
        self.error: Exception | None = None

    async def catch_up(self) -> None:
        self.started.set()
        await self.finish.wait()
        if self.error is not None:
            raise self.error


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(OPS, 0, offset, 0, 0, b"k", b"v", None, 1, 1, ())


def _sink(monkeypatch: pytest.MonkeyPatch) -> tuple[MarketoSink, _SlowCatchUp, list[int]]:
    sink = MarketoSink(SinkSettings(), tenants(monkeypatch))
    reader = _SlowCatchUp()
    sink._ledger_reader = reader  # type: ignore[assignment]
    routed: list[int] = []

    async def route(tp: TopicPartition, m: ConsumerRecord[bytes, bytes], give_up: asyncio.Event) -> None:
        routed.append(m.offset)

    sink.router.route = route  # type: ignore[method-assign]
    return sink, reader, routed


def _without_commits(sink: MarketoSink) -> None:
    """The revocation's offset commit does nothing (no broker here)."""

    async def no_commit(only: Any = None) -> None:
        return None

    sink.commits.commit = no_commit  # type: ignore[method-assign]


async def test_a_batch_of_a_new_assignment_waits_for_the_catch_up_and_is_then_routed_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sink, reader, routed = _sink(monkeypatch)
    await sink.on_revoked(set())  # a rebalance begins (aiokafka revokes, with an empty set the first time)
    # getmany returns records of the new assignment before on_partitions_assigned is called ...
    routing = asyncio.create_task(sink._route_batch({TP: [_record(0), _record(1)]}))
    assigning = asyncio.create_task(sink.on_assigned({TP}))
    await reader.started.wait()
    # ... and while the catch-up reads, nothing of it is routed.
    assert routed == [] and not routing.done()
    reader.finish.set()
    await assigning
    await routing
    assert routed == [0, 1], "not dropped: its positions are not fetched again"


async def test_the_assignment_callback_returns_while_the_catch_up_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka sends no heartbeats while a rebalance callback runs: a catch-up inside it that outlasts the
    session timeout (about 1.5 million outcomes) gets the replica evicted mid-assignment. The callback only
    starts it; routing still waits for it."""
    sink, reader, routed = _sink(monkeypatch)
    await sink.on_revoked(set())
    # returns although the catch-up has not finished (the bound only guards the test against hanging)
    await asyncio.wait_for(sink.on_assigned({TP}), timeout=10)
    await reader.started.wait()
    routing = asyncio.create_task(sink._route_batch({TP: [_record(0)]}))
    await asyncio.sleep(0)
    assert routed == [] and not routing.done(), "nothing is routed before the ledger has caught up"
    reader.finish.set()
    await routing
    assert routed == [0]


async def test_a_revocation_cancels_a_catch_up_and_the_next_assignment_catches_up_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sink, reader, routed = _sink(monkeypatch)
    _without_commits(sink)
    await sink.on_revoked(set())
    await asyncio.wait_for(sink.on_assigned({TP}), timeout=10)
    await reader.started.wait()
    await sink.on_revoked({TP})  # a second rebalance before the first catch-up finished
    assert sink._catch_up is None and not sink._settled.is_set(), "the cancelled catch-up opens no gate"
    reader.started.clear()
    await asyncio.wait_for(sink.on_assigned({TP}), timeout=10)
    await reader.started.wait()
    routing = asyncio.create_task(sink._route_batch({TP: [_record(3)]}))
    await asyncio.sleep(0)
    assert not routing.done()
    reader.finish.set()
    await routing
    assert routed == [3] and sink._failure is None


async def test_a_failed_catch_up_stops_the_sink_and_routes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    sink, reader, routed = _sink(monkeypatch)
    await sink.on_revoked(set())
    routing = asyncio.create_task(sink._route_batch({TP: [_record(0)]}))
    await asyncio.wait_for(sink.on_assigned({TP}), timeout=10)
    await reader.started.wait()
    reader.error = TimeoutError("end offsets")
    reader.finish.set()
    await routing
    assert routed == []
    assert isinstance(sink._failure, TimeoutError), "a failed catch-up must stop the sink"


async def test_a_batch_polled_before_a_rebalance_is_not_routed_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    sink, reader, routed = _sink(monkeypatch)
    reader.finish.set()
    await sink.on_assigned({TP})
    gate = asyncio.Event()

    async def slow_route(tp: TopicPartition, m: ConsumerRecord[bytes, bytes], give_up: asyncio.Event) -> None:
        routed.append(m.offset)
        await gate.wait()  # routing awaits (a dead letter): a rebalance runs meanwhile

    sink.router.route = slow_route  # type: ignore[method-assign]
    routing = asyncio.create_task(sink._route_batch({TP: [_record(5), _record(6)]}))
    await asyncio.sleep(0)
    await sink.on_revoked(set())
    await sink.on_assigned({TP})
    gate.set()
    await routing
    assert routed == [5], "the rest is fetched again from the committed offset by the new assignment"


class _Worker:
    """What the revocation reads of a worker; its stop lasts until the test lets it end."""

    def __init__(self, partition: int | None, stopping: list[str], name: str, munchkin_id: str = "") -> None:
        self.partitions = set() if partition is None else {(OPS, partition)}
        self.name, self.stopping, self.munchkin_id = name, stopping, munchkin_id or name
        self.release = asyncio.Event()

    async def stop(self, drain_timeout: float) -> list[PendingOp]:
        self.stopping.append(self.name)
        await self.release.wait()
        return []


async def test_a_revocation_stops_every_leaving_worker_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    sink, _, _ = _sink(monkeypatch)
    stopping: list[str] = []
    live, backfill = _Worker(0, stopping, "live", "a"), _Worker(0, stopping, "backfill", "a")
    other = _Worker(1, stopping, "x")
    sink.router.workers.update({"a-live": live, "a-backfill": backfill, "b-live": other})  # type: ignore[dict-item]
    _without_commits(sink)
    revoking = asyncio.create_task(sink.on_revoked({TP}))
    for _ in range(100):  # yield to the revocation: each stop blocks until released, both must begin
        if len(stopping) == 2:
            break
        await asyncio.sleep(0)
    assert not revoking.done()
    assert sorted(stopping) == ["backfill", "live"], "both lanes stop together, within one drain timeout"
    live.release.set()
    backfill.release.set()
    await revoking
    assert set(sink.router.workers) == {"b-live"}


async def test_a_lane_that_read_nothing_leaves_with_its_instances_other_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backfill lane made the instance's live worker, which has read nothing (no partition of its own): it shares
    the backfill worker's Marketo client, whose new lead requests that worker's extended drain may stop for good, so
    it stops too (the next live record makes a fresh one) instead of staying on a client that sends no lead."""
    sink, _, _ = _sink(monkeypatch)
    stopping: list[str] = []
    backfill, idle_live = _Worker(0, stopping, "backfill", "a"), _Worker(None, stopping, "live", "a")
    other = _Worker(1, stopping, "x")
    sink.router.workers.update({"a-backfill": backfill, "a": idle_live, "b": other})  # type: ignore[dict-item]
    _without_commits(sink)
    for w in (backfill, idle_live, other):
        w.release.set()
    await sink.on_revoked({TP})
    assert sorted(stopping) == ["backfill", "live"] and set(sink.router.workers) == {"b"}


async def test_a_batch_polled_after_a_failed_catch_up_is_not_routed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The catch-up fails while the loop waits in getmany: the next batch finds the gate open, and
    must still not be routed (the ledger never caught up)."""
    sink, reader, routed = _sink(monkeypatch)
    await sink.on_revoked(set())
    reader.error = ConnectionError("broker away")
    reader.finish.set()
    await asyncio.wait_for(sink.on_assigned({TP}), timeout=10)
    assert sink._catch_up is not None
    await sink._catch_up
    await sink._route_batch({TP: [_record(0)]})
    assert routed == []
    assert isinstance(sink._failure, ConnectionError)


async def test_a_stop_while_routing_waits_for_the_catch_up_routes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A graceful stop does not wait for a long catch-up: the batch is left uncommitted (read again later)."""
    sink, reader, routed = _sink(monkeypatch)
    await sink.on_revoked(set())
    await asyncio.wait_for(sink.on_assigned({TP}), timeout=10)
    await reader.started.wait()
    routing = asyncio.create_task(sink._route_batch({TP: [_record(0)]}))
    await asyncio.sleep(0)
    assert not routing.done()
    sink._stop.set()
    await asyncio.wait_for(routing, timeout=10)
    assert routed == []
    await sink._cancel_catch_up()


async def test_a_rebalance_during_the_shutdown_starts_no_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shutdown's drain can outlast a rebalance: a catch-up started then would be failed by the reader's stop
    (a false "catch-up failed" error) and left un-awaited."""
    sink, reader, _ = _sink(monkeypatch)
    sink._stopping = True  # as _shutdown sets it first
    await sink.on_revoked(set())
    await sink.on_assigned({TP})
    assert sink._catch_up is None and not reader.started.is_set()
