"""A lead write Marketo may still be processing after its error is replayed no earlier than
``RetrySettings.ambiguous_replay_delay_seconds`` after it was sent (docs/reference/marketo-api.md §5.1, §10.4).

Against the Marketo sandbox's ``apply_after_seconds`` fault: the error is answered at once and the Sync Leads
call runs later with the lookups it made on arrival, as a request still in process at Marketo would, so a replay
sent in the meantime creates the lead and the late call creates it again (a duplicate lead). Virtual time: the
client and the sandbox share one clock (conftest.py)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from pydantic import ValidationError

from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.errors import MarketoApiError
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.retry_replay import in_process_reason, replay_wait, same_key_write
from kmsync_marketo.settings import RetrySettings
from kmsync_marketo.transport import CallStats
from kmsync_testing.waiting import wait_for
from marketo_sandbox.config import FaultConfig, FaultRule

from .conftest import SandboxEnv, sandbox_env

SYNC = "POST /rest/v1/leads.json"
LATE = 30.0  # seconds after its error the sandbox applies the write
DELAY = 90.0


def _late_write(error: str, **extra: Any) -> FaultConfig:
    return FaultConfig(rules=[FaultRule(endpoint=SYNC, error=error, apply_after_seconds=LATE, max_count=1, **extra)])


def _retry(delay: float, **extra: Any) -> RetrySettings:
    return RetrySettings(ambiguous_replay_delay_seconds=delay, backoff_base_seconds=1.0, **extra)


async def _settle(env: SandboxEnv) -> None:
    """Let every late write run (the clock passes its time) before the leads are counted."""
    env.manual.advance(2 * LATE)
    await env.sandbox.settle_late_calls()


def _sync_times(env: SandboxEnv) -> list[float]:
    return [r["at"] for r in env.inst.request_log if r["endpoint"] == SYNC]


def _parked_client(env: SandboxEnv, limiters: LimiterRegistry | None = None, **retry: Any) -> MarketoClient:
    """A client on the sandbox's clock without SharedClock: it parks until the test moves the clock."""
    c = MarketoClient(env.settings(retry=_retry(DELAY, **retry)), clock=env.manual, limiters=limiters or LimiterRegistry(),
                      token_registry=TokenRegistry(), rng=random.Random(3))
    env.clients.append(c)
    return c


async def test_replayed_at_once_a_write_still_in_process_makes_a_duplicate_lead() -> None:
    """The risk the delay exists for, with the delay off: the replay creates the lead while the first request
    still runs; when that one is applied, it creates the lead a second time."""
    async with sandbox_env(faults=_late_write("604")) as env:
        client = env.client(env.settings(retry=_retry(0.0)))
        result = await client.sync_leads([{"email": "new@example.com", "firstName": "New"}])
        assert result.outcomes[0].status == "created"
        await _settle(env)
        assert len(env.inst.leads_by_email("new@example.com")) == 2, "a duplicate lead (§5.1)"


@pytest.mark.parametrize("error", ["604", "drop", "http_503", "502"])
async def test_a_write_that_may_still_run_is_replayed_after_the_delay_and_written_once(error: str) -> None:
    async with sandbox_env(faults=_late_write(error)) as env:
        client = env.client(env.settings(retry=_retry(DELAY)))
        result = await client.sync_leads([{"email": "new@example.com", "firstName": "New"}])
        await _settle(env)
        leads = env.inst.leads_by_email("new@example.com")
        assert len(leads) == 1, "no duplicate lead"
        assert leads[0].values.get("firstName") == "New", "nothing lost"
        assert result.outcomes[0].ok
        first, replay = _sync_times(env)
        assert replay - first >= DELAY, "the replay waited at least the configured delay after the first send"
        stats = client.transport.stats
        assert stats.retry_reasons == {"in_process": 1} and stats.replay_delay_seconds > DELAY - 2


async def test_an_error_marketo_answered_is_replayed_after_the_ordinary_backoff() -> None:
    """611 ends the request (an unhandled exception): no request is left running, so no reason to wait."""
    faults = FaultConfig(rules=[FaultRule(endpoint=SYNC, error="611", apply_then_fail=True, max_count=1)])
    async with sandbox_env(faults=faults) as env:
        client = env.client(env.settings(retry=_retry(DELAY)))
        await client.sync_leads([{"email": "new@example.com"}])
        first, replay = _sync_times(env)
        assert replay - first <= 1.0
        assert client.transport.stats.retry_reasons == {"backoff": 1}
        assert len(env.inst.leads_by_email("new@example.com")) == 1


async def test_out_of_attempts_the_failure_is_returned_only_after_the_delay() -> None:
    """The caller may upsert the same email as soon as the call returns: the failure waits until the first
    request cannot be running any more, so that next upsert cannot race it."""
    async with sandbox_env(faults=_late_write("604")) as env:
        client = env.client(env.settings(retry=_retry(DELAY, max_attempts=1)))
        start = env.manual.time()
        result = await client.sync_leads([{"email": "new@example.com", "firstName": "First"}])
        assert result.outcomes[0].status == "failed" and result.outcomes[0].reason_code == "604"
        assert env.manual.time() - start >= DELAY
        assert client.transport.stats.retry_reasons == {"in_process_hold": 1}
        again = await client.sync_leads([{"email": "new@example.com", "lastName": "Again"}])
        assert again.outcomes[0].status == "updated"
        await _settle(env)
        leads = env.inst.leads_by_email("new@example.com")
        assert len(leads) == 1 and leads[0].values.get("firstName") == "First"


async def test_the_wait_holds_no_limiter_slot_and_other_emails_are_written_meanwhile() -> None:
    """Only the call that may still run waits: its limiter slot is free, and another client of the same
    instance (same limiter) writes other emails at once."""
    async with sandbox_env(faults=_late_write("604")) as env:
        clock, limiters = env.manual, LimiterRegistry()
        held = asyncio.create_task(_parked_client(env, limiters).sync_leads([{"email": "held@example.com"}]))
        # Parked: the late write (30 s) and the held call (90 s after its send).
        await wait_for(lambda: clock.sleepers == 2, within=10, what="the held call waiting out the delay")
        other = await asyncio.wait_for(_parked_client(env, limiters).sync_leads([{"email": "other@example.com"}]), 10)
        assert other.outcomes[0].status == "created" and not held.done()
        clock.advance(DELAY)
        assert (await asyncio.wait_for(held, 10)).outcomes[0].ok
        await env.sandbox.settle_late_calls()
        assert len(env.inst.leads_by_email("held@example.com")) == 1


async def test_the_client_counts_a_lead_write_sent_and_not_answered_yet() -> None:
    """``CallStats.lead_writes_in_process``, the hook a caller's drain reads (the sink's held_leads.py): a Sync Leads
    request on the wire counts until its answer; a Get Leads on the wire does not (nothing to duplicate)."""
    faults = FaultConfig(rules=[FaultRule(endpoint=SYNC, latency_seconds=LATE, max_count=1),
                                FaultRule(endpoint="GET /rest/v1/leads.json", latency_seconds=LATE, max_count=1)])
    async with sandbox_env(faults=faults) as env:
        client = _parked_client(env)
        stats = client.transport.stats
        write = asyncio.create_task(client.sync_leads([{"email": "slow@example.com"}]))
        await wait_for(lambda: env.manual.sleepers == 1, within=10, what="the Sync Leads request at the sandbox")
        assert stats.lead_writes_in_process == 1
        read = asyncio.create_task(client.transport.call(
            "GET", "/rest/v1/leads.json", params={"filterType": "email", "filterValues": "slow@example.com"}))
        await wait_for(lambda: env.manual.sleepers == 2, within=10, what="the Get Leads request at the sandbox")
        assert stats.lead_writes_in_process == 1, "a read is not counted"
        env.manual.advance(LATE)
        assert (await asyncio.wait_for(write, 10)).outcomes[0].status == "created"
        await asyncio.wait_for(read, 10)
        assert stats.lead_writes_in_process == 0 and stats.lead_writes == {}


@pytest.mark.parametrize(("attempts", "abandon"), [(6, False), (1, False), (6, True)],
                         ids=["held before its replay", "held before its failure", "abandoned while held"])
async def test_the_client_counts_a_held_lead_write_until_the_call_returns(attempts: int, abandon: bool) -> None:
    """A Sync Leads call answered 604 (Marketo may still run it) counts while the client holds it, and no longer once
    it has returned, or once its caller has abandoned it (cancelled)."""
    async with sandbox_env(faults=_late_write("604")) as env:
        client = _parked_client(env, max_attempts=attempts)
        stats = client.transport.stats
        held = asyncio.create_task(client.sync_leads([{"email": "held@example.com"}]))
        # Parked: the late write (30 s) and the held call (90 s after its send).
        await wait_for(lambda: env.manual.sleepers == 2, within=10, what="the call held by the replay delay")
        assert stats.lead_writes_in_process == 1
        if abandon:
            held.cancel()
            await asyncio.gather(held, return_exceptions=True)
        else:
            env.manual.advance(DELAY)
            await asyncio.wait_for(held, 10)
        assert stats.lead_writes_in_process == 0 and stats.lead_writes == {}
        assert stats.retry_reasons == {"in_process" if attempts > 1 else "in_process_hold": 1}
        await _settle(env)


async def test_stopped_lead_writes_send_no_new_request_but_still_replay_a_held_call() -> None:
    """``CallStats.stop_lead_writes`` (a stopping caller's drain, the sink's held_leads.py): a new Sync Leads call waits
    with its request unsent until its caller cancels it (no failure, nothing at Marketo); a call held by the replay
    delay still sends its replay, the answer the caller waits for."""
    async with sandbox_env(faults=_late_write("604")) as env:
        client = _parked_client(env)
        stats = client.transport.stats
        held = asyncio.create_task(client.sync_leads([{"email": "held@example.com"}]))
        await wait_for(lambda: env.manual.sleepers == 2, within=10, what="the call held by the replay delay")
        stats.stop_lead_writes()
        new = asyncio.create_task(client.sync_leads([{"email": "new@example.com"}]))
        await wait_for(lambda: bool(stats.lead_writes_unsent), within=10, what="the new call waiting unsent")
        assert len(_sync_times(env)) == 1, "only the held call's first request reached Marketo"
        env.manual.advance(DELAY)
        assert (await asyncio.wait_for(held, 10)).outcomes[0].ok, "the held call's replay was sent and answered"
        assert len(_sync_times(env)) == 2 and stats.lead_writes_in_process == 0
        assert not new.done(), "still waiting, neither sent nor failed"
        new.cancel()
        await asyncio.gather(new, return_exceptions=True)
        assert stats.lead_writes_unsent == set() and len(_sync_times(env)) == 2
        assert env.inst.leads_by_email("new@example.com") == []
        await _settle(env)


async def test_a_sync_leads_call_made_after_the_stop_takes_no_limiter_slot() -> None:
    """A call that starts after ``stop_lead_writes`` waits unsent before the limiter: no slot, nothing counted (a
    call that waited in the limiter, e.g. behind a 606 pause, would not show as unsent to the stopping caller)."""
    async with sandbox_env() as env:
        client = _parked_client(env)
        stats = client.transport.stats
        started = client.transport.limiter.stats().calls_started
        stats.stop_lead_writes()
        new = asyncio.create_task(client.sync_leads([{"email": "new@example.com"}]))
        await wait_for(lambda: bool(stats.lead_writes_unsent), within=10, what="the new call waiting unsent")
        assert client.transport.limiter.stats().calls_started == started and _sync_times(env) == []
        new.cancel()
        await asyncio.gather(new, return_exceptions=True)
        assert stats.lead_writes_unsent == set()


async def test_a_change_of_the_lead_writes_wakes_every_waiter_and_later_ones_wait_for_the_next() -> None:
    """Two stopping lanes wait on the client's ``lead_writes_changed``: a change wakes both (nobody clears the event
    another waits on), and a waiter that comes after it gets a fresh event."""
    stats = CallStats()
    waiters = [asyncio.create_task(stats.lead_writes_changed.wait()) for _ in range(2)]
    stats.lead_write(1, "sent", now=True)
    stats.lead_write(1, "sent", now=False)
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert not stats.lead_writes_changed.is_set(), "the next waiter waits for the next change"
    before = stats.lead_writes_changed
    stats.lead_write(2, "held", now=False)  # every Sync Leads call ends its hold, most were never held
    assert not before.is_set() and stats.lead_writes_changed is before and stats.lead_writes == {}, "no wake-up"


def test_which_answers_may_leave_a_lead_write_running() -> None:
    codes = RetrySettings().in_process_codes
    assert in_process_reason(sent=True, http_status=None, code=None, in_process_codes=codes)
    assert in_process_reason(sent=False, http_status=None, code=None, in_process_codes=codes) is None
    assert in_process_reason(sent=True, http_status=200, code="604", in_process_codes=codes)
    assert in_process_reason(sent=True, http_status=200, code="611", in_process_codes=codes) is None
    assert in_process_reason(sent=True, http_status=503, code=None, in_process_codes=codes)
    assert in_process_reason(sent=True, http_status=429, code=None, in_process_codes=codes) is None
    assert same_key_write("POST", "/rest/v1/leads.json", None)
    assert not same_key_write("POST", "/rest/v1/leads.json", {"_method": "GET"})
    assert not same_key_write("POST", "/rest/v1/activities/external.json", None)
    assert replay_wait(backoff=1.0, delay=90.0, sent_at=100.0, now=110.0) == 80.0
    assert replay_wait(backoff=1.0, delay=90.0, sent_at=0.0, now=300.0) == 1.0  # a long timeout already waited


def test_the_delay_defaults_to_the_server_timeout_and_is_set_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", raising=False)
    assert RetrySettings().ambiguous_replay_delay_seconds == 90.0
    monkeypatch.setenv("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", "12.5")
    assert RetrySettings().ambiguous_replay_delay_seconds == 12.5
    monkeypatch.setenv("KMSYNC_MARKETO_AMBIGUOUS_REPLAY_DELAY_SECONDS", "-1")
    with pytest.raises(ValidationError, match="ambiguous_replay_delay_seconds"):
        RetrySettings()


def test_a_late_write_fault_needs_an_error_marketo_could_answer_after_work() -> None:
    with pytest.raises(ValidationError, match="apply_after_seconds"):
        FaultRule(endpoint=SYNC, error="606", apply_after_seconds=1.0)
    with pytest.raises(ValidationError, match="apply_after_seconds"):
        FaultRule(endpoint=SYNC, apply_after_seconds=1.0)
    assert MarketoApiError("604", "x").info.ambiguous
