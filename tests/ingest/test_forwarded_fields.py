"""A notification forwarded to the owner of its event carries only what the owner reads of it
(notifications.FORWARDED_KEYS): no email, name or form answer reaches ingest.pull-owners.v1."""

from __future__ import annotations

from kmsync_ingest.notifications import forwarded_fields

PROFILE = {"objectType": "kmsyncSandboxExtension.UserProfile", "id": "p-17", "updatedAt": "2026-03-02T12:00:00Z",
           "userId": "jane@example.com", "profileData": {"firstName": "Jane", "email": "jane@example.com"}}
ENTRY = {"objectType": "KalturaLiveStreamEntry", "id": "1_abc", "name": "Keynote", "startDate": 1, "endDate": 2,
         "description": "by jane@example.com"}


def test_a_profile_notification_forwards_its_id_and_version_only() -> None:
    body = {"eventNotificationJobId": 9, "object": PROFILE, "userId": "jane@example.com"}
    assert forwarded_fields("user_profile", body) == {"object": {"id": "p-17", "updatedAt": "2026-03-02T12:00:00Z"}}


def test_an_entry_notification_forwards_its_times_and_name_in_either_mode() -> None:
    assert forwarded_fields("entry", {"object": ENTRY}) == {"object": {"name": "Keynote", "startDate": 1, "endDate": 2}}
    form = {"entryId": "1_abc", "startDate": "1", "endDate": "2", "name": "Keynote", "userEmail": "jane@example.com"}
    assert forwarded_fields("entry", form) == {"startDate": "1", "endDate": "2", "name": "Keynote"}


def test_a_user_notification_forwards_nothing_of_its_object() -> None:
    user = {"objectType": "KalturaUser", "id": "jane@example.com", "email": "jane@example.com"}
    assert "jane@example.com" not in repr(forwarded_fields("user", {"object": user}))
