"""Client settings from the tenants file (kmsync_config), so services never re-map them by hand."""

from __future__ import annotations

from urllib.parse import urlsplit

from kmsync_config import MarketoInstance
from kmsync_marketo.settings import LimiterSettings, MarketoSettings

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def settings_from_instance(instance: MarketoInstance, limits: LimiterSettings | None = None) -> MarketoSettings:
    """The tenants file's instance (share, daily quota, rate limit, secret by reference) as client
    settings; the instance's share, daily quota and rate limit replace those of ``limits``.
    Resolves the secret reference; raises ValueError saying where it looked if it cannot."""
    base = limits or LimiterSettings()
    host = urlsplit(instance.endpoint).hostname or ""
    return MarketoSettings(
        endpoint=instance.endpoint,
        client_id=instance.client_id,
        client_secret=instance.client_secret.resolve(),
        munchkin_id=instance.munchkin_id,
        limits=base.model_copy(update={
            "share": instance.share,
            "daily_quota": instance.daily_quota,
            # Calls per rolling window of the instance (docs/reference/marketo-api.md §2.1), e.g. a lifted sandbox.
            "rate_limit_calls": instance.rate_limit_calls,
            # The backfill lane's cap (architecture.md principle 10).
            "backfill_share": instance.backfill_share,
        }),
        allow_insecure_http=host in _LOOPBACK,
    )
