"""Kafka down during a webhook or an upload: 503 with Retry-After, nothing acknowledged, not ready."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from kaltura_sandbox.testing import running_sandbox
from kmsync_kaltura import compute_signature
from kmsync_testing.ingest import metric, running_ingest, settings_for, tenants_for, upload_headers
from kmsync_testing.kafka_broker import start_broker

pytestmark = pytest.mark.kafka


async def test_broker_outage_during_a_webhook_answers_503(tmp_path: Path, http: httpx.AsyncClient) -> None:
    # Its own broker: killing the shared session broker would break every other test.
    broker = await asyncio.to_thread(start_broker, tmp_path / "kafka")
    try:
        async with running_sandbox({"registrants": 60, "sessions": 1}, seed=9) as sb:
            sb.advance_to_end()
            settings = settings_for(broker.bootstrap, "outage.", sb, kafka_ack_timeout_seconds=2,
                                    retry_after_seconds=7)
            async with running_ingest(settings, tenants_for(sb, tmp_path / "secrets"), sb) as ingest:
                ready = await http.get(f"{ingest.base_url}/readyz")
                assert ready.status_code == 200
                await asyncio.to_thread(broker.kill)

                body = json.dumps({
                    "object": {"objectType": "KalturaVirtualEvent", "id": sb.virtual_event_id,
                               "partnerId": sb.partner_id},
                    "eventObjectType": "virtualEventEventNotifications.VirtualEvent", "eventType": 3,
                    "eventNotificationJobId": 777, "objectType": "KalturaHttpNotification",
                }).encode()
                headers = {"Content-Type": "application/json",
                           "X-KALTURA-SIGNATURE": compute_signature(sb.admin_secret, body, "sha1")}
                answer = await http.post(ingest.notification_url, content=body, headers=headers)
                assert answer.status_code == 503
                assert answer.headers["Retry-After"] == "7"
                assert answer.json()["error"] == "Kafka unavailable, nothing was acknowledged"
                # Not remembered as handled: Kaltura's retry will be processed in full.
                assert "777" not in ingest.service.handled_jobs
                assert ingest.service.watermarks.get(sb.partner_id, sb.virtual_event_id, "statuses") is None
                assert metric(ingest.service, "kmsync_ingest_notifications_total", outcome="kafka_unavailable") == 1
                assert metric(ingest.service, "kmsync_ingest_kafka_up") == 0

                csv = "\ufeffentry_id,poll_id,poll_type,question,user_id,email,answer,answered_at\n" \
                      f"{sb.session_entry_ids[0]},p1,crowd vote,Q?,u1,u1@acme.com,Yes,2025-06-16T14:00:00.000Z\n"
                upload = await http.post(f"{ingest.base_url}/ingest/kaltura/reports", content=csv.encode(),
                                         headers=upload_headers())
                assert upload.status_code == 503 and upload.headers["Retry-After"] == "7"

                ready = await http.get(f"{ingest.base_url}/readyz")
                assert ready.status_code == 503
                health = await http.get(f"{ingest.base_url}/healthz")
                assert health.status_code == 200  # alive: an outside outage must not restart it
    finally:
        await asyncio.to_thread(broker.stop)
