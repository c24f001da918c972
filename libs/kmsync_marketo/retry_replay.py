"""When a lead write that Marketo may still be processing may be replayed (pure: no I/O, no clock).

docs/reference/marketo-api.md §5.1: concurrent upserts with the same key can create duplicate leads, so only
one upsert per email may be in flight. §10.4: after a 604, a 502 or a lost answer the write may have been
applied; whether Marketo is still processing it when the error arrives, and for how long, is UNCONFIRMED (Sync
Leads' server timeout is 90 s). So a Sync Leads attempt that ended that way is replayed no earlier than
``RetrySettings.ambiguous_replay_delay_seconds`` after it was sent, and when the retries run out the failure
is returned no earlier either: once the call returns, none of its requests is still running at Marketo, and
the caller's own same-email serialisation (the sink: one window per lane, the other lane waits for the emails
a window writes) holds for the whole time.

Not delayed: an answer Marketo gave with an explicit error that ends the request (500, 608, 611, 713, 719 in a
JSON body), a connection that was never made, and every other endpoint (program member statuses are keyed by
lead id and cannot duplicate; custom activities are never replayed blindly; custom objects and bulk imports:
see libs/kmsync_marketo/README.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from kmsync_marketo import endpoints as ep


def same_key_write(method: str, path: str, params: Mapping[str, Any] | None) -> bool:
    """A Sync Leads call (not a Get Leads sent as ``POST ?_method=GET``, §10.9)."""
    return method == "POST" and path == ep.LEADS and (params or {}).get("_method") != "GET"


def in_process_reason(
    *, sent: bool, http_status: int | None, code: str | None, in_process_codes: Collection[str]
) -> str | None:
    """Why the attempt may still be running at Marketo, or None. ``http_status`` None: no answer at all
    (``sent``: the request may have reached Marketo); ``code``: the response-level code of a 200 answer."""
    if http_status is None:
        return "no answer after the request was sent" if sent else None
    if code is not None:
        return f"Marketo {code} (a timeout)" if code in in_process_codes else None
    if http_status >= 500:
        return f"HTTP {http_status} (a gateway's answer; Marketo may still run the request)"
    return None


def replay_wait(*, backoff: float, delay: float, sent_at: float, now: float) -> float:
    """Seconds to wait before the replay: the ordinary backoff, or until ``delay`` after the send if later."""
    return max(backoff, sent_at + delay - now)
