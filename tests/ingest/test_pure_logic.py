"""Pure pieces of ingest: watermark-boundary and snapshot de-duplication, notification reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from kmsync_ingest.boundary import Boundary, select_after, select_changed
from kmsync_ingest.errors import BadInput
from kmsync_ingest.job_ids import HandledJobs
from kmsync_ingest.kaltura_source import user_profile_base
from kmsync_ingest.notifications import read_notification
from kmsync_ingest.times import iso_time, unix_time

T0 = datetime(2025, 6, 16, 13, 0, tzinfo=UTC)


def stamp(item: tuple[datetime, str]) -> tuple[datetime, str]:
    return item


def test_select_after_skips_what_the_inclusive_boundary_already_covered() -> None:
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    boundary = Boundary(t1, frozenset({"a", "b"}))
    items = [(T0, "old"), (t1, "a"), (t1, "b"), (t1, "c"), (t2, "d"), (t2, "d")]
    fresh, after = select_after(items, stamp, boundary)
    assert fresh == [(t1, "c"), (t2, "d")]
    assert after == Boundary(t2, frozenset({"d"}))


def test_select_after_keeps_every_id_tied_at_the_newest_instant() -> None:
    fresh, after = select_after([(T0, "x"), (T0, "y")], stamp, None)
    assert fresh == [(T0, "x"), (T0, "y")] and after == Boundary(T0, frozenset({"x", "y"}))
    again, same = select_after([(T0, "x"), (T0, "y"), (T0, "z")], stamp, after)
    assert again == [(T0, "z")] and same == Boundary(T0, frozenset({"x", "y", "z"}))
    nothing, unchanged = select_after([], stamp, same)
    assert nothing == [] and unchanged == same


def test_select_changed_produces_new_and_changed_rows_only() -> None:
    rows = [{"user": "a", "polls": 1}, {"user": "b", "polls": 2}]
    fresh, seen = select_changed(rows, lambda r: r, frozenset())
    assert fresh == rows
    later = [{"user": "a", "polls": 1}, {"user": "b", "polls": 3}, {"user": "c", "polls": 0}]
    fresh, seen2 = select_changed(later, lambda r: r, seen)
    assert fresh == later[1:]
    assert len(seen2) == 3


def test_handled_jobs_forget_the_oldest_first() -> None:
    jobs = HandledJobs(2)
    for job in ("1", "2", "3"):
        jobs.remember(job)
    assert "1" not in jobs and "2" in jobs and "3" in jobs and len(jobs) == 2


def _env(obj: dict[str, object], eot: object = 1, job: object = 5) -> bytes:
    return json.dumps({"object": obj, "eventObjectType": eot, "eventType": 3, "eventNotificationJobId": job,
                       "objectType": "KalturaHttpNotification"}).encode()


def test_notifications_are_classified_by_what_they_carry() -> None:
    entry = read_notification(_env({"objectType": "KalturaMediaEntry", "id": "1_abc", "partnerId": 7}),
                              "application/json")
    assert (entry.kind, entry.entry_id, entry.partner_id, entry.job_id) == ("entry", "1_abc", 7, "5")
    ve = read_notification(_env({"objectType": "KalturaVirtualEvent", "id": 99, "partnerId": 7},
                                "virtualEventEventNotifications.VirtualEvent"), "application/json")
    assert (ve.kind, ve.virtual_event_id, ve.wants_statuses) == ("virtual_event", 99, True)
    legacy = urlencode({"data": _env({"objectType": "KalturaUser", "id": "u", "partnerId": 7}, 8).decode()})
    user = read_notification(legacy.encode(), "application/x-www-form-urlencoded")
    assert (user.kind, user.wants_statuses) == ("user", True)
    fields = read_notification(b"entry_id=1_x&partner_id=7", "application/x-www-form-urlencoded")
    assert (fields.kind, fields.entry_id, fields.partner_id) == ("entry", "1_x", 7)
    assert fields.job_id.startswith("body-sha256:")
    other = read_notification(_env({"objectType": "KalturaCategory", "id": 3}, 2), "application/json")
    assert other.kind == "unknown"


@pytest.mark.parametrize(("body", "ctype", "status", "field"), [
    (b"{not json", "application/json", 400, "body"),
    (b"[1, 2]", "application/json", 400, "body"),
    (_env({"objectType": "KalturaMediaEntry", "id": 5, "partnerId": 7}), "application/json", 400, "object.id"),
    (_env({"objectType": "KalturaVirtualEvent", "id": "x", "partnerId": 7}), "application/json", 400, "object.id"),
    (_env({"objectType": "KalturaUser", "partnerId": "seven"}, 8), "application/json", 400, "object.partnerId"),
    (_env({"id": 1}, 1, None), "application/json", 400, "eventNotificationJobId"),
    (b"data=%3Cxml%2F%3E", "application/x-www-form-urlencoded", 415, "data"),
    (b"partner_id=abc", "application/x-www-form-urlencoded", 400, "partner_id"),
    (b"{}", "application/xml", 415, "Content-Type"),
])
def test_bad_notifications_name_the_field(body: bytes, ctype: str, status: int, field: str) -> None:
    with pytest.raises(BadInput) as caught:
        read_notification(body, ctype)
    assert caught.value.status == status
    assert any(p.startswith(f"{field}:") for p in caught.value.problems), caught.value.problems


def test_user_profile_url_may_be_the_host_or_the_api_base() -> None:
    assert user_profile_base("https://user.us.ovp.kaltura.com") == "https://user.us.ovp.kaltura.com/api/v1"
    assert user_profile_base("http://127.0.0.1:5/api/v1/") == "http://127.0.0.1:5/api/v1"


def test_kaltura_times_are_read_only_when_they_name_an_instant() -> None:
    assert iso_time("2025-06-16T13:00:00Z") == T0
    assert iso_time("2025-06-16T15:00:00+02:00") == T0
    assert iso_time("2025-06-16T13:00:00") is None  # no zone: never a guess
    assert iso_time("yesterday") is None and iso_time(1750078800) is None and iso_time(None) is None
    assert unix_time(1750078800) == T0 and unix_time("1750078800") == T0 and unix_time(1750078800.0) == T0
    assert unix_time(True) is None and unix_time("soon") is None and unix_time(10**30) is None
