"""Reading a Kaltura HTTP notification body and deciding what it should trigger (pure logic).

Body variants (docs/reference/kaltura-api.md §2.3, §7.2): raw JSON ``KalturaHttpNotification`` with
``Content-Type: application/json``; legacy ``data=<url-encoded JSON>`` form; free form fields
(``application/x-www-form-urlencoded``, the template's own keys). ``eventObjectType`` and
``eventType`` may be ints or strings (plugin object types are strings, §2.2).

Real Kaltura has no attendance webhook (§2.6): a notification is a *trigger*. What it triggers:
VirtualEvent → the event's statuses and its ended sessions; entry (session) → that session's
engagement and polls; KalturaUser / UserProfile (the sandbox's extension) → statuses of the
partner's events (UserProfile: the event of its appGuid).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from kmsync_ingest.errors import BadInput
from kmsync_kaltura.errors import NotificationParseError
from kmsync_kaltura.models import HttpNotification
from kmsync_kaltura.notifications import parse_notification
from kmsync_kaltura.urls import check_entry_id

#: eventObjectType values that mean "an entry (a session) changed" (docs/reference/kaltura-api.md §2.2).
ENTRY_OBJECT_TYPES = {"1", "38", "entry", "KalturaBaseEntry", "KalturaLiveStreamEntry", "KalturaMediaEntry"}
#: Object types whose ``id`` is an entry id (the API object's objectType).
ENTRY_API_TYPES = {"KalturaBaseEntry", "KalturaMediaEntry", "KalturaLiveStreamEntry", "KalturaLiveEntry",
                   "KalturaPlayableEntry"}
USER_OBJECT_TYPES = {"8", "KalturaUser"}
PROFILE_API_TYPES = {"UserProfile", "KalturaUserProfile"}
VIRTUAL_EVENT_API_TYPES = {"KalturaVirtualEvent"}


@dataclass(frozen=True)
class Notification:
    """What ingest needs from one notification."""

    #: eventNotificationJobId, or a digest of the body when the template sends none (fields mode).
    job_id: str
    partner_id: int | None
    #: statuses and/or sessions
    wants_statuses: bool = False
    virtual_event_id: int | None = None
    app_guid: str | None = None
    entry_id: str | None = None
    kind: str = "unknown"
    fields: dict[str, Any] = field(default_factory=dict, repr=False)


#: What the replica that owns the event reads of a forwarded notification's object, by kind (puller.py:
#: ``covers_profile``, a profile's id and version; ``learn_session``, an entry's times and name), at the top level
#: (fields mode) or under ``object``. Nothing else is forwarded: a profile's email, names and form answers, or a
#: user's id (often the email), stay with the replica that received the notification, out of
#: ingest.pull-owners.v1 (docs/configuration.md, "Where emails are").
FORWARDED_KEYS: dict[str, tuple[str, ...]] = {
    "user_profile": ("id", "updatedAt"),
    "entry": ("startDate", "endDate", "name"),
}


def forwarded_fields(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The part of a notification's fields a forwarded trigger carries (``FORWARDED_KEYS``)."""
    keys = FORWARDED_KEYS.get(kind, ())
    out = {k: fields[k] for k in keys if k in fields}
    obj = fields.get("object")
    if isinstance(obj, dict):
        out["object"] = {k: obj[k] for k in keys if k in obj}
    return out


def read_notification(raw: bytes, content_type: str) -> Notification:
    """Parse and classify a notification body; BadInput (400/415) with field-level problems."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        form = _form(raw)
        if "data" not in form:
            return _from_fields(form, raw)
        if form["data"].lstrip().startswith("<"):
            raise BadInput(415, "unsupported notification format",
                           ["data: XML notifications are not supported; set the template's format to JSON"])
    elif ctype not in ("application/json", "text/json", "text/plain", ""):
        raise BadInput(415, "unsupported content type",
                       [f"Content-Type: {ctype!r}; send application/json or application/x-www-form-urlencoded"])
    try:
        envelope = parse_notification(raw, ctype or "application/json")
    except NotificationParseError as exc:
        raise BadInput(400, "malformed notification", [f"{field}: {msg}" for field, msg in exc.errors]) from None
    return classify(envelope)


def _form(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text.strip()))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(400, "malformed form body", [f"body: {exc}"]) from None
    if not pairs:
        raise BadInput(400, "empty notification", ["body: no fields"])
    return dict(pairs)


def _as_int(value: Any, where: str, problems: list[str]) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        problems.append(f"{where}: expected an integer, got {value!r}")
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        problems.append(f"{where}: expected an integer, got {str(value)[:40]!r}")
        return None
    if number <= 0:
        problems.append(f"{where}: must be positive, got {number}")
        return None
    return number


def _first(mapping: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in mapping and mapping[name] not in (None, ""):
            return mapping[name]
    return None


def classify(env: HttpNotification) -> Notification:
    """What an API-object notification triggers (field-level BadInput for what we rely on)."""
    problems: list[str] = []
    obj = env.object
    job = str(env.event_notification_job_id)
    partner = _as_int(obj.get("partnerId"), "object.partnerId", problems)
    api_type = env.kaltura_object_type or ""
    event_object_type = str(env.event_object_type)
    body = env.model_dump(by_alias=True)
    note = Notification(job_id=job, partner_id=partner, fields=body)
    if api_type in VIRTUAL_EVENT_API_TYPES or event_object_type.endswith(".VirtualEvent"):
        vid = _as_int(obj.get("id"), "object.id", problems)
        note = Notification(job, partner, True, vid, None, None, "virtual_event", body)
    elif api_type in PROFILE_API_TYPES:
        app_guid = obj.get("appGuid")
        if app_guid is not None and not isinstance(app_guid, str):
            problems.append("object.appGuid: expected a string")
            app_guid = None
        note = Notification(job, partner, True, None, app_guid or None, None, "user_profile", body)
    elif api_type in ENTRY_API_TYPES or event_object_type in ENTRY_OBJECT_TYPES:
        entry = obj.get("id")
        if not isinstance(entry, str) or not entry.strip():
            problems.append("object.id: the entry id (a string like 1_abcd1234) is required")
            entry = None
        elif (bad := _bad_entry_id(entry)) is not None:
            problems.append(f"object.id: {bad}")
            entry = None
        note = Notification(job, partner, False, None, None, entry, "entry", body)
    elif api_type == "KalturaUser" or event_object_type in USER_OBJECT_TYPES:
        note = Notification(job, partner, True, None, None, None, "user", body)
    if problems:
        raise BadInput(400, "malformed notification", problems)
    return note


def _from_fields(form: dict[str, str], raw: bytes) -> Notification:
    """Fields data mode (docs/reference/kaltura-api.md §2.3): the template's own keys; we read the usual names."""
    problems: list[str] = []
    job = _first(form, "eventNotificationJobId", "event_notification_job_id", "job_id")
    job_id = str(job) if job is not None else "body-sha256:" + hashlib.sha256(raw).hexdigest()[:32]
    partner = _as_int(_first(form, "partner_id", "partnerId"), "partner_id", problems)
    vid = _as_int(_first(form, "virtual_event_id", "virtualEventId"), "virtual_event_id", problems)
    entry = _first(form, "entry_id", "entryId")
    app_guid = _first(form, "app_guid", "appGuid")
    user = _first(form, "user_id", "userId")
    if entry and (bad := _bad_entry_id(str(entry))) is not None:
        problems.append(f"entry_id: {bad}")
    if problems:
        raise BadInput(400, "malformed notification", problems)
    fields: dict[str, Any] = dict(form)
    if entry:
        return Notification(job_id, partner, False, vid, app_guid, str(entry), "entry", fields)
    if vid or app_guid or user:
        return Notification(job_id, partner, True, vid, app_guid, None, "fields", fields)
    return Notification(job_id, partner, kind="unknown", fields=fields)


def _bad_entry_id(entry: str) -> str | None:
    """Why an entry id cannot be used (it goes into report parameters and URLs), or None."""
    try:
        check_entry_id(entry)
    except ValueError as exc:
        return str(exc)
    return None
