"""Shared runtime: hashed emails in logs, health and metrics endpoints."""

from __future__ import annotations

import httpx
from prometheus_client import Counter

from kmsync_common import hash_email, start_health_server
from kmsync_testing.kafka_broker import free_port

PROBE = Counter("kmsync_test_probe", "a counter only this test increments")


def test_hash_email_is_stable_case_insensitive_and_hides_the_address() -> None:
    assert hash_email("Jane@Acme.com ") == hash_email("jane@acme.com")
    assert hash_email("jane@acme.com") != hash_email("john@acme.com")
    assert "jane" not in hash_email("jane@acme.com") and "acme" not in hash_email("jane@acme.com")
    assert hash_email(None) == "email#none"


async def test_health_ready_and_metrics_endpoints() -> None:
    ready = {"ok": False}
    port = free_port()
    runner = await start_health_server("127.0.0.1", port, ready=lambda: ready["ok"])
    try:
        PROBE.inc(3)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503
            ready["ok"] = True
            assert (await http.get("/readyz")).json() == {"ready": True}
            metrics = (await http.get("/metrics")).text
    finally:
        await runner.cleanup()
    assert "kmsync_test_probe_total 3.0" in metrics
