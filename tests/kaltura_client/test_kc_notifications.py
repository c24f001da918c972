"""Notification signature verification (secret + raw body) and body parsing."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from urllib.parse import quote

import pytest
from aiohttp import web

from kaltura_sandbox.testing import running_sandbox
from kmsync_kaltura import (
    HASH_ALGO_HEADER,
    SIGNATURE_HEADER,
    NotificationParseError,
    SignatureError,
    check_signature,
    compute_signature,
    parse_notification,
    verify_signature,
)

BODY = json.dumps({
    "object": {"objectType": "KalturaUser", "id": "jane@acme.com", "email": "jane@acme.com"},
    "eventObjectType": 8, "eventType": 2, "eventNotificationJobId": 33578094492, "templateId": 1,
    "templateName": "User Added", "templateSystemName": "USER_ADDED", "objectType": "KalturaHttpNotification",
}).encode()


@pytest.mark.parametrize(("algo", "fn"), [("sha1", hashlib.sha1), ("sha256", hashlib.sha256),
                                          ("sha512", hashlib.sha512), (None, hashlib.sha1), ("2", hashlib.sha256)])
def test_valid_signature_for_each_algorithm(algo: str | None, fn: Callable[[bytes], object]) -> None:
    signature = fn(b"admin-secret" + BODY).hexdigest()  # type: ignore[attr-defined]
    assert compute_signature("admin-secret", BODY, algo) == signature
    assert verify_signature(BODY, signature, "admin-secret", algo)
    assert verify_signature(BODY, signature.upper(), "admin-secret", algo)


def test_tampered_body_wrong_secret_or_wrong_algo_fail() -> None:
    signature = hashlib.sha1(b"admin-secret" + BODY).hexdigest()
    tampered = BODY.replace(b"33578094492", b"33578094493")
    assert not verify_signature(tampered, signature, "admin-secret", "sha1")
    assert not verify_signature(BODY + b" ", signature, "admin-secret", "sha1")
    assert not verify_signature(BODY, signature, "other-secret", "sha1")
    assert not verify_signature(BODY, signature, "admin-secret", "sha256")
    # HMAC is not what Kaltura does: a receiver expecting HMAC would wrongly refuse.
    import hmac
    assert not verify_signature(BODY, hmac.new(b"admin-secret", BODY, "sha1").hexdigest(), "admin-secret")


def test_check_signature_says_why() -> None:
    with pytest.raises(SignatureError, match="missing"):
        check_signature(BODY, None, "s")
    with pytest.raises(SignatureError, match="unsupported"):
        check_signature(BODY, "abc", "s", "md5")
    with pytest.raises(SignatureError, match="does not match"):
        check_signature(BODY, "00" * 20, "s", "sha1")
    assert not verify_signature(BODY, "ünïcode", "s")


def test_parse_json_and_legacy_form_bodies() -> None:
    n = parse_notification(BODY, "application/json; charset=utf-8")
    assert n.event_notification_job_id == 33578094492 and n.kaltura_object_type == "KalturaUser"
    assert n.event_object_type == 8
    form = ("data=" + quote(BODY.decode())).encode()
    assert parse_notification(form, "application/x-www-form-urlencoded") == n
    plugin = json.loads(BODY)
    plugin["eventObjectType"] = "virtualEventEventNotifications.VirtualEvent"
    assert parse_notification(json.dumps(plugin).encode()).event_object_type == (
        "virtualEventEventNotifications.VirtualEvent")


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"),
    (b"[1,2]", "body"),
    (b"\xff\xfe", "body"),
    (json.dumps({**json.loads(BODY), "eventNotificationJobId": None}).encode(), "eventNotificationJobId"),
    (json.dumps({k: v for k, v in json.loads(BODY).items() if k != "object"}).encode(), "object"),
    (json.dumps({**json.loads(BODY), "objectType": "KalturaUser"}).encode(), "objectType"),
])
def test_malformed_bodies_get_field_level_errors(body: bytes, field: str) -> None:
    with pytest.raises(NotificationParseError) as caught:
        parse_notification(body)
    assert any(f == field for f, _ in caught.value.errors), caught.value.errors
    with pytest.raises(NotificationParseError):
        parse_notification(b"x=1", "application/x-www-form-urlencoded")


async def test_notifications_from_the_sandbox_verify_with_the_library() -> None:
    got: list[tuple[bytes, str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((await request.read(), request.headers[SIGNATURE_HEADER], request.headers[HASH_ALGO_HEADER]))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/n", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        scenario = {"registrants": 20, "sessions": 2,
                    "notifications": {"hash_algo": "sha512", "duplicate_rate": 0.0, "kinds": ["entry", "user"]}}
        async with running_sandbox(scenario, seed=9, notify_url=f"http://127.0.0.1:{port}/n") as sb:
            sb.advance_to_end()
            deadline = asyncio.get_running_loop().time() + 20
            while len(got) < 22:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            secret = sb.admin_secret
    finally:
        await runner.cleanup()
    for body, signature, algo in got:
        assert algo == "sha512"
        check_signature(body, signature, secret, algo)
        n = parse_notification(body)
        assert n.kaltura_object_type in {"KalturaUser", "KalturaLiveStreamEntry"}
        assert not verify_signature(body.replace(b'"id"', b'"Id"'), signature, secret, algo)
