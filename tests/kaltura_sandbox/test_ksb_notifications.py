"""The sandbox posts signed Kaltura HTTP notifications, retries non-2xx, and sends duplicates."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from kaltura_sandbox.testing import running_sandbox
from kmsync_testing.waiting import wait_for


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    answered: int


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)


@asynccontextmanager
async def receiver(answer: Callable[[bytes, int], int]) -> AsyncIterator[Receiver]:
    """A tiny HTTP endpoint; ``answer(body, nth_time_this_body_was_seen)`` picks the status."""
    seen: Counter[bytes] = Counter()
    state = Receiver(url="")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen[body] += 1
        status = answer(body, seen[body])
        state.received.append(Received(body, dict(request.headers), status))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/kaltura", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    state.url = f"http://127.0.0.1:{port}/kaltura"
    try:
        yield state
    finally:
        await runner.cleanup()


FAST_RETRY = {"retry_base_seconds": 0.05, "retry_max_seconds": 0.2}


async def test_signed_with_secret_plus_raw_body_and_retried_until_2xx() -> None:
    async with receiver(lambda body, nth: 500 if nth <= 2 else 200) as rx:
        scenario = {"registrants": 50, "sessions": 2,
                    "notifications": {"duplicate_rate": 0.0, "hash_algo": "sha256", **FAST_RETRY}}
        async with running_sandbox(scenario, seed=2, notify_url=rx.url, notify_secret="s3cret") as sb:
            sb.advance_to_end()
            # virtual event start + end, and one entry notification per session.
            await wait_for(lambda: len(sb.sandbox.dispatcher.log.delivered) == 4)
            log = sb.sandbox.dispatcher.log
    ok = [r for r in rx.received if r.answered == 200]
    assert len(ok) == 4 and len(rx.received) == 12  # two 500s before each success
    for r in rx.received:
        assert r.headers["X-KALTURA-HASH-ALGO"] == "sha256"
        assert r.headers["X-KALTURA-SIGNATURE"] == hashlib.sha256(b"s3cret" + r.body).hexdigest()
        assert r.headers["Content-Type"].startswith("application/json")
    bodies = [json.loads(r.body) for r in ok]
    assert all(b["objectType"] == "KalturaHttpNotification" for b in bodies)
    kinds = Counter(b["object"]["objectType"] for b in bodies)
    assert kinds == {"KalturaVirtualEvent": 2, "KalturaLiveStreamEntry": 2}
    assert {b["eventObjectType"] for b in bodies} == {"virtualEventEventNotifications.VirtualEvent", 1}
    assert len({b["eventNotificationJobId"] for b in bodies}) == 4
    assert [a["attempt"] for a in log.attempts if a["job_id"] == bodies[0]["eventNotificationJobId"]] == [1, 2, 3]
    assert not log.gave_up


async def test_growing_delay_and_giving_up_after_max_attempts() -> None:
    async with receiver(lambda body, nth: 503) as rx:
        scenario = {"registrants": 10, "sessions": 1,
                    "notifications": {"kinds": ["entry"], "max_attempts": 4, **FAST_RETRY}}
        async with running_sandbox(scenario, seed=2, notify_url=rx.url) as sb:
            sb.advance_to_end()
            await wait_for(lambda: len(sb.sandbox.dispatcher.log.gave_up) == 1)
            attempts = sb.sandbox.dispatcher.log.attempts
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert all(a["status"] == 503 for a in attempts)
    assert len(rx.received) == 4
    # sha1 with the partner admin secret is the default (docs/reference/kaltura-api.md §2.4).
    r = rx.received[0]
    assert r.headers["X-KALTURA-HASH-ALGO"] == "sha1"
    assert r.headers["X-KALTURA-SIGNATURE"] == hashlib.sha1(sb.admin_secret.encode() + r.body).hexdigest()


async def test_duplicates_repeat_the_job_id_and_body() -> None:
    async with receiver(lambda body, nth: 204) as rx:
        scenario = {"registrants": 10, "sessions": 3,
                    "notifications": {"kinds": ["entry"], "duplicate_rate": 1.0, **FAST_RETRY}}
        async with running_sandbox(scenario, seed=3, notify_url=rx.url) as sb:
            sb.advance_to_end()
            await wait_for(lambda: len(rx.received) == 6)
    per_job = Counter(json.loads(r.body)["eventNotificationJobId"] for r in rx.received)
    assert set(per_job.values()) == {2}
    assert len({r.body for r in rx.received}) == 3


async def test_nothing_is_sent_before_it_happens_in_scenario_time() -> None:
    async with receiver(lambda body, nth: 200) as rx:
        scenario = {"registrants": 10, "sessions": 2, "notifications": {"kinds": ["entry"], **FAST_RETRY}}
        async with running_sandbox(scenario, seed=3, notify_url=rx.url) as sb:
            first_end = sb.sandbox.scenario.sessions[0].end
            sb.advance_to(first_end)
            await wait_for(lambda: len(rx.received) >= 1)
            assert sb.sandbox.dispatcher.pending == 1  # the second session has not ended yet
            assert json.loads(rx.received[0].body)["object"]["id"] == sb.session_entry_ids[0]


async def test_user_profile_extension_notifications_carry_the_profile() -> None:
    async with receiver(lambda body, nth: 200) as rx:
        scenario = {"registrants": 5, "sessions": 1,
                    "notifications": {"kinds": ["user_profile"], "duplicate_rate": 0.0, **FAST_RETRY}}
        async with running_sandbox(scenario, seed=3, notify_url=rx.url) as sb:
            sb.advance_to_end()
            total = sum(len(a["transitions"]) for a in sb.truth()["attendees"])
            await wait_for(lambda: len(rx.received) == total)
    objects = [json.loads(r.body)["object"] for r in rx.received]
    assert all(o["objectType"] == "UserProfile" and o["eventData"]["attendanceStatus"] for o in objects)
