"""Client settings from the tenants file: the instance's share, quota and rate limit reach the limiter."""

from __future__ import annotations

from typing import Any

import pytest

from kmsync_config import parse_tenants
from kmsync_marketo.from_config import settings_from_instance
from kmsync_marketo.settings import LimiterSettings


def instance(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> Any:
    monkeypatch.setenv("TEST_FROM_CONFIG_SECRET", "s3cr3t")
    cfg = parse_tenants({"marketo_instances": {"acme": {
        "munchkin_id": "123-ABC-456", "endpoint": "https://123-ABC-456.mktorest.com", "client_id": "cid",
        "client_secret": {"env": "TEST_FROM_CONFIG_SECRET"}, **fields}}, "events": []})
    return cfg.marketo_instances["acme"]


def test_instance_limits_flow_into_the_limiter_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_instance(instance(monkeypatch, share=0.5, daily_quota=20_000, rate_limit_calls=1000))
    limits = settings.limits
    assert (limits.share, limits.daily_quota, limits.rate_limit_calls) == (0.5, 20_000, 1000)
    # The rolling window the limiter enforces: share × the instance's calls, less the headroom.
    assert limits.window_limit == 500 - limits.rate_headroom_calls
    assert settings.client_secret.get_secret_value() == "s3cr3t"


def test_marketo_rate_by_default_and_the_instance_wins_over_given_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    inst = instance(monkeypatch, share=1.0)
    assert settings_from_instance(inst).limits.window_limit == 100 - 10, "docs/reference/marketo-api.md §2.1: 100 per 20 s"
    given = LimiterSettings(rate_limit_calls=5000, rate_headroom_calls=0, max_concurrency=3)
    limits = settings_from_instance(inst, given).limits
    assert (limits.rate_limit_calls, limits.max_concurrency) == (100, 3), "tenants file decides the rate"
