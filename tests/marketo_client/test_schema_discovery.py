"""Issue #17: schema discovery (names with or without ``_c``, display names, overrides, fields, lengths,
dedupe and link fields), record shaping (omitted fields, strings cut to length) and the dedupe rule."""

from __future__ import annotations

from pydantic import SecretStr

from kmsync_contracts import seed
from kmsync_marketo.auth import TokenRegistry
from kmsync_marketo.client import MarketoClient
from kmsync_marketo.limiter import LimiterRegistry
from kmsync_marketo.schema import (
    ENGAGEMENT_ACTIVITY,
    ENGAGEMENT_OBJECT,
    POLLS_OBJECT,
    FieldInfo,
    ObjectSchema,
    cut,
    dedupe_problem,
    discover_schema,
    match_name,
    omitted_fields,
    shape_attributes,
    shape_record,
)
from kmsync_marketo.settings import MarketoSettings
from marketo_sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from marketo_sandbox.shape import PARTIAL_ACTIVITY_FIELDS, PARTIAL_ENGAGEMENT_FIELDS, kaltura_partial_shape
from marketo_sandbox.testing import running_sandbox


def _client(base_url: str) -> MarketoClient:
    settings = MarketoSettings(endpoint=base_url, client_id=DEFAULT_CLIENT_ID,
                               client_secret=SecretStr(DEFAULT_CLIENT_SECRET), allow_insecure_http=True)
    return MarketoClient(settings, limiters=LimiterRegistry(), token_registry=TokenRegistry())


def test_names_match_with_or_without_c_by_display_name_and_override_wins() -> None:
    items = [{"name": "kalturaUserSessionEngagement_c", "displayName": "x"},
             {"name": "kalturaUserPolls", "displayName": "y"},
             {"name": "engagementByAdmin_c", "displayName": "Kaltura user session engagement"}]
    assert match_name(items, ENGAGEMENT_OBJECT, name_key="name", display_key="displayName")[1] == "api name with _c"
    found, how = match_name(items, POLLS_OBJECT, name_key="name", display_key="displayName")
    assert found is not None and found["name"] == "kalturaUserPolls" and how == "api name without _c"
    by_display = [items[2]]
    found, how = match_name(by_display, ENGAGEMENT_OBJECT, name_key="name", display_key="displayName")
    assert found is not None and how == "display name"
    found, how = match_name(items, ENGAGEMENT_OBJECT, name_key="name", display_key="displayName",
                            override="engagementByAdmin_c")
    assert found is not None and found["name"] == "engagementByAdmin_c" and how == "override"
    assert match_name(items, ENGAGEMENT_OBJECT, name_key="name", display_key="displayName",
                      override="nope")[0] is None


def _obj(dedupe: tuple[str, ...], link: str | None = "personId") -> ObjectSchema:
    fields = {n: FieldInfo(n, "string") for n in ("entry_id", "email", "user", "entry_name")}
    if link:
        fields[link] = FieldInfo(link, "link")
    return ObjectSchema(ENGAGEMENT_OBJECT, "kalturaUserSessionEngagement_c", "", fields, dedupe, link,
                        ("Lead", "id") if link else None)


def test_a_dedupe_key_that_would_make_attendees_overwrite_each_other_is_refused_with_the_fix() -> None:
    problem = dedupe_problem(_obj(("entry_id",)))
    assert problem is not None and "every attendee of a session would overwrite one record" in problem
    assert "recreate 'kalturaUserSessionEngagement_c' with dedupe fields entry_id + personId" in problem
    problem = dedupe_problem(_obj(("personId",)))
    assert problem is not None and "every session of a person" in problem
    problem = dedupe_problem(_obj(("entry_id", "crmId")))
    assert problem is not None and "no value for" in problem
    assert dedupe_problem(_obj(("entry_id", "personId"))) is None
    assert dedupe_problem(_obj(("entry_id", "email"), link=None)) is None
    # An admin's link field under another name identifies the person too.
    assert dedupe_problem(_obj(("entry_id", "leadLink"), link="leadLink")) is None


def test_records_keep_only_existing_fields_map_the_link_and_cut_strings_to_length() -> None:
    obj = ObjectSchema(ENGAGEMENT_OBJECT, "eng_c", "", {
        "entry_id": FieldInfo("entry_id", "string"), "leadLink": FieldInfo("leadLink", "link"),
        "entry_name": FieldInfo("entry_name", "string", 10), "plays": FieldInfo("plays", "integer"),
        "marketoGUID": FieldInfo("marketoGUID", "string", 36, False)}, ("entry_id", "leadLink"),
        "leadLink", ("Lead", "id"))
    shaped = shape_record(obj, {"entry_id": "1_a", "personId": 7, "entry_name": "A long session name",
                                "plays": 3, "raise_hand": 2, "marketoGUID": "x"})
    assert shaped.values == {"entry_id": "1_a", "leadLink": 7, "entry_name": "A long ses", "plays": 3}
    assert shaped.omitted == ("raise_hand", "marketoGUID")
    assert shaped.truncated == (("entry_name", 19, 10),)
    assert shaped.note() == "written with values cut to the field length in Marketo: entry_name from 19 to 10"
    # Strings default to 255 characters, text to 30,000 bytes (cut on a character boundary).
    assert cut("x" * 300, FieldInfo("a", "string"))[0] == "x" * 255
    text, before = cut("é" * 15_001, FieldInfo("b", "text"))
    assert before == 30_002 and len(text.encode()) <= 30_000 and text == "é" * 15_000
    assert cut(12, FieldInfo("c", "integer")) == (12, None)
    # At the text limit exactly (4-byte characters: not cut without encoding them), and one past it.
    assert cut("😀" * 7_500, FieldInfo("b", "text")) == ("😀" * 7_500, None)
    assert cut("😀" * 7_501, FieldInfo("b", "text")) == ("😀" * 7_500, 30_004)
    assert cut("x" * 29_999 + "é", FieldInfo("b", "text")) == ("x" * 29_999, 30_001)


async def test_discovery_reads_what_the_admin_built() -> None:
    async with running_sandbox(preset="empty") as sb:
        sb.shape(kaltura_partial_shape())
        async with _client(sb.base_url) as client:
            schema = await discover_schema(client)
            calls = sb.calls()["total"]
    eng = schema.objects[ENGAGEMENT_OBJECT]
    assert eng is not None and eng.api_name == "kalturaUserSessionEngagement_c"
    assert eng.matched_by == "api name with _c"
    assert eng.dedupe_fields == ("entry_id", "personId") and eng.link_field == "personId"
    assert eng.fields["entry_name"].length == 40 and eng.fields["entry_name"].limit == 40
    assert set(omitted_fields(ENGAGEMENT_OBJECT, eng)) | set(PARTIAL_ENGAGEMENT_FIELDS) == {
        f.name for f in seed.ENGAGEMENT_OBJECT_FIELDS}
    assert len(omitted_fields(ENGAGEMENT_OBJECT, eng)) == 20
    polls = schema.objects[POLLS_OBJECT]
    assert polls is not None and polls.api_name == "kalturaUserPolls_c" and polls.matched_by == "api name"
    assert "poll_4_type" in omitted_fields(POLLS_OBJECT, polls) and "poll_3_question" in polls.fields
    act = schema.activity
    assert act is not None and act.api_name == "userSessionEngagement" and act.type_id > 0
    assert act.primary is not None and act.primary.name == "entry_id"
    assert set(act.attributes) == set(PARTIAL_ACTIVITY_FIELDS[1:])
    assert len(omitted_fields(ENGAGEMENT_ACTIVITY, act)) == 10
    shaped = shape_attributes(act, {"entry_name": "n" * 50, "mic_on": 1.0, "plays": 2})
    assert shaped.values == {"entry_name": "n" * 40, "plays": 2} and shaped.omitted == ("mic_on",)
    assert calls <= 6  # two lists and one describe per schema (+ Identity is not counted)


async def test_discovery_without_the_custom_object_permission_reports_it() -> None:
    async with running_sandbox(preset="kaltura") as sb:
        sb.set_permissions(["Read-Write Person", "Read-Write Activity", "Read-Write Activity Metadata"])
        async with _client(sb.base_url) as client:
            schema = await discover_schema(client)
    assert schema.objects == {ENGAGEMENT_OBJECT: None, POLLS_OBJECT: None}
    assert "603" in schema.errors[ENGAGEMENT_OBJECT]
    assert schema.activity is not None and schema.activity.type_id == 100001
