"""REST operations against the Marketo sandbox: per-record outcomes for mixed batches, re-auth."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from kmsync_marketo.client import ActivityRecord
from kmsync_marketo.errors import ErrorClass, MarketoAuthError
from kmsync_marketo.settings import LimiterSettings, RetrySettings
from marketo_sandbox import preset_kaltura as kp
from marketo_sandbox.config import BehaviourConfig, FaultConfig, FaultRule, InstanceConfig

from .conftest import sandbox_env


async def test_mixed_lead_batch_outcomes_are_aligned_with_input() -> None:
    async with sandbox_env() as env:
        client = env.client()
        first = await client.sync_leads([{"email": "Ann@Example.com", "firstName": "Ann"}])
        assert first.outcomes[0].status == "created"
        ann_id = first.lead_ids["ann@example.com"]

        result = await client.sync_leads([
            {"email": "bob@example.com", "firstName": "Bob"},       # new → created
            {"email": "ann@example.com", "lastName": "Smith"},      # existing → updated
            {"firstName": "No Email"},                               # no lookup value → failed 1003
            {"email": "cy@example.com", "leadScore": "many"},       # bad type → failed
        ])
        statuses = [(o.seq, o.status) for o in result.outcomes]
        assert statuses == [(0, "created"), (1, "updated"), (2, "failed"), (3, "failed")]
        assert result.lead_ids["ann@example.com"] == ann_id
        assert result.outcomes[2].reason_code == "1003"
        assert result.outcomes[2].classification is ErrorClass.PERMANENT
        assert "cy@example.com" not in result.lead_ids and set(result.lead_ids) == {"bob@example.com",
                                                                                     "ann@example.com"}

        only_new = await client.sync_leads([{"email": "bob@example.com"}], action="createOnly")
        assert (only_new.outcomes[0].status, only_new.outcomes[0].reason_code) == ("failed", "1005")


async def test_program_member_status_outcomes_including_1037_and_1025() -> None:
    async with sandbox_env("kaltura") as env:
        client = env.client()
        leads = await client.sync_leads([{"email": f"m{i}@example.com"} for i in range(3)])
        ids = [leads.lead_ids[f"m{i}@example.com"] for i in range(3)]
        attended = await client.sync_program_member_status(kp.PROGRAM_ID, "Attended", ids[:1])
        assert attended[0].status == "created" and attended[0].marketo_id == str(ids[0])

        out = await client.sync_program_member_status(kp.PROGRAM_ID, "Registered", [ids[0], ids[1], 999_999])
        # Lower step than Attended → skipped with 1037, which is not an error.
        assert (out[0].status, out[0].reason_code, out[0].classification) == ("skipped", "1037", None)
        assert out[0].ok and not out[0].retryable
        assert (out[1].status, out[1].seq) == ("created", 1)
        assert (out[2].status, out[2].reason_code) == ("failed", "1004")

        bad = await client.sync_program_member_status(kp.PROGRAM_ID, "Not A Status", ids)
        assert [o.status for o in bad] == ["failed"] * 3
        assert {o.reason_code for o in bad} == {"1025"}
        assert all(o.classification is ErrorClass.PERMANENT for o in bad)


async def test_custom_activities_and_objects_mixed_batches() -> None:
    async with sandbox_env("kaltura") as env:
        client = env.client()
        leads = await client.sync_leads([{"email": "a@example.com"}])
        lead_id = leads.lead_ids["a@example.com"]
        when = datetime(2026, 3, 4, 14, 0, tzinfo=UTC)
        acts = await client.add_custom_activities([
            ActivityRecord(lead_id=lead_id, activity_type_id=kp.ACTIVITY_TYPE_ID, activity_date=when,
                           primary_attribute_value="1_entry", attributes={"plays": 3, "entry_name": "Keynote"}),
            ActivityRecord(lead_id=987_654, activity_type_id=kp.ACTIVITY_TYPE_ID, activity_date=when,
                           primary_attribute_value="1_entry"),
        ])
        assert acts[0].status == "created" and acts[0].marketo_id
        assert (acts[1].status, acts[1].reason_code) == ("failed", "1004")
        assert len(env.inst.activities) == 1

        objs = await client.sync_custom_objects(kp.ENGAGEMENT_CO, [
            {"entry_id": "1_a", "personId": lead_id, "plays": 2},
            {"entry_id": "1_b", "personId": 987_654, "plays": 1},      # link to no lead → 1004
            {"entry_id": "1_c", "personId": lead_id, "plays": 5},
            {"entry_id": "1_c", "personId": lead_id, "plays": 6},      # same key twice → 1036
        ])
        assert [o.status for o in objs] == ["created", "failed", "created", "failed"]
        assert [o.reason_code for o in objs] == [None, "1004", None, "1036"]
        again = await client.sync_custom_objects(kp.ENGAGEMENT_CO, [{"entry_id": "1_a", "personId": lead_id,
                                                                     "plays": 4}])
        assert again[0].status == "updated" and again[0].marketo_id == objs[0].marketo_id


async def test_large_input_is_split_into_calls_of_300_with_global_seq() -> None:
    async with sandbox_env() as env:
        client = env.client()
        result = await client.sync_leads([{"email": f"bulk{i}@example.com"} for i in range(650)])
        assert [o.seq for o in result.outcomes] == list(range(650))
        assert all(o.status == "created" for o in result.outcomes)
        assert env.count("200", "POST /rest/v1/leads.json") == 3
        assert len(env.inst.leads) == 650


async def test_expired_token_is_refreshed_once_and_the_call_replayed() -> None:
    async with sandbox_env() as env:
        client = env.client()
        await client.sync_leads([{"email": "t@example.com"}])
        # Expire every token on the server behind the client's back: next call gets 601/602.
        env.inst.tokens.expire_all(env.manual.time())
        result = await client.sync_leads([{"email": "t@example.com", "firstName": "T"}])
        assert result.outcomes[0].status == "updated"
        assert client.transport.stats.reauths == 1
        assert env.count("602") + env.count("601") == 1
        requests = [r for r in env.inst.request_log if r["endpoint"] == "POST /rest/v1/leads.json"]
        assert requests and all("access_token" not in r["query"] for r in requests)  # header only


async def test_a_call_that_outlives_two_tokens_renews_twice() -> None:
    """One re-authentication per attempt, not per call: a call retried after a backoff can meet a second
    token death (the chaos plan expires every token each 20 s; session 8's CI lost 425 operations to 601)."""
    async with sandbox_env() as env:
        client = env.client(env.settings(retry=RetrySettings(backoff_base_seconds=2.0)))
        await client.sync_leads([{"email": "t@example.com"}])
        env.sandbox.set_faults(FaultConfig(
            rules=[FaultRule(endpoint="POST /rest/v1/leads.json", error="502", max_count=1)],
            token_expire_every_seconds=0.5,
        ))
        env.inst.tokens.expire_all(env.manual.time())
        # token 1 → 602, re-auth; token 2 → 502, a backoff of at least 1 s in which the plan expires
        # token 2 → 602, re-auth; token 3 → written.
        result = await client.sync_leads([{"email": "t@example.com", "firstName": "T"}])
        assert result.outcomes[0].status == "updated"
        assert client.transport.stats.reauths == 2
        assert env.count("602", "POST /rest/v1/leads.json") == 2
        assert env.count("502", "POST /rest/v1/leads.json") == 1


async def test_a_second_dead_token_in_one_attempt_is_retried_not_failed() -> None:
    """Two invalid tokens in a row within one attempt (a quota park's day can pass between taking a
    fresh token and sending it): nothing was done with the request, so it backs off and is sent with
    a third token. Session 12's CI failed 12 parked records with 601 when this raised."""
    async with sandbox_env() as env:
        expiring = {"left": 2}

        async def expire_before_send(request: httpx.Request) -> None:
            if request.url.path.endswith("/rest/v1/leads.json") and expiring["left"]:
                expiring["left"] -= 1
                env.inst.tokens.expire_all(env.manual.time())  # the token in this request is dead on arrival

        http = httpx.AsyncClient(event_hooks={"request": [expire_before_send]})
        try:
            client = env.client(http=http)
            result = await client.sync_leads([{"email": "t@example.com"}])
        finally:
            await http.aclose()
        assert result.outcomes[0].status == "created"
        assert expiring["left"] == 0
        assert client.transport.stats.reauths == 1  # the first dead token; the second went to the retry layer
        assert client.transport.stats.retries == 1
        assert env.count("602", "POST /rest/v1/leads.json") == 2
        assert len(env.inst.leads) == 1


async def test_the_token_is_taken_once_the_slot_is_held() -> None:
    """A token that dies while its call waits for a limiter slot is not sent: the call takes the token
    in use when the slot is its own, and costs no re-authentication."""
    async with sandbox_env() as env:
        client = env.client(env.settings(limits=LimiterSettings(max_concurrency=1)))
        await client.sync_leads([{"email": "t@example.com"}])
        limiter = client.transport.limiter
        waiting = asyncio.Event()
        enter = limiter._enter

        async def enter_and_tell(backfill: bool) -> None:
            waiting.set()
            await enter(backfill)

        async with limiter.slot():
            limiter._enter = enter_and_tell  # type: ignore[method-assign]
            call = asyncio.create_task(client.sync_leads([{"email": "t@example.com", "firstName": "T"}]))
            await waiting.wait()  # the call holds its token and waits for the slot held here
            env.manual.set(env.manual.time() + 7200)  # the 1 h token is dead, on both sides
        result = await call
        assert result.outcomes[0].status == "updated"
        assert client.transport.stats.reauths == 0
        assert env.count("602") + env.count("601") == 0


async def test_bad_credentials_raise_auth_error_without_leaking_the_secret() -> None:
    async with sandbox_env() as env:
        client = env.client(env.settings(secret="wrong-secret-value"))
        with pytest.raises(MarketoAuthError) as info:
            await client.sync_leads([{"email": "x@example.com"}])
        assert "wrong-secret-value" not in str(info.value)
        assert "Bad client credentials" in str(info.value)


async def test_insert_only_activities_are_not_replayed_after_an_ambiguous_failure() -> None:
    faults = FaultConfig(rules=[
        FaultRule(endpoint="POST /rest/v1/activities/external.json", error="604", apply_then_fail=True,
                  max_count=1),
        FaultRule(endpoint="POST /rest/v1/activities/external.json", error="606", max_count=1),
    ])
    async with sandbox_env("kaltura", faults=faults) as env:
        client = env.client()
        leads = await client.sync_leads([{"email": "act@example.com"}])
        record = ActivityRecord(lead_id=leads.lead_ids["act@example.com"], activity_type_id=kp.ACTIVITY_TYPE_ID,
                                activity_date=datetime(2026, 3, 4, 14, 0, tzinfo=UTC),
                                primary_attribute_value="1_entry")
        first = await client.add_custom_activities([record])
        # 604 after the write was applied: reported, not replayed (a replay would duplicate it).
        assert (first[0].status, first[0].reason_code) == ("failed", "604")
        assert first[0].retryable and first[0].maybe_applied
        assert "may have been applied" in (first[0].reason or "")
        assert len(env.inst.activities) == 1
        # 606 is a rejection before any work: retried by the client, written exactly once.
        second = await client.add_custom_activities([record])
        assert second[0].status == "created"
        assert len(env.inst.activities) == 2 and env.count("606") == 1


async def test_every_resend_is_counted_under_its_reason_a_throttle_under_its_own() -> None:
    """A 606 and a 615 sent again after the limiter's pause are ``throttle`` resends, a 611 a ``backoff`` one:
    each counted in ``retry_reasons`` as it happens, not worked out from the total (the sink's
    ``kmsync_sink_marketo_retries_total{reason}`` reads them)."""
    faults = FaultConfig(rules=[
        FaultRule(endpoint="POST /rest/v1/leads.json", error="606", max_count=1),
        FaultRule(endpoint="POST /rest/v1/leads.json", error="615", max_count=1),
        FaultRule(endpoint="POST /rest/v1/leads.json", error="611", max_count=1),
    ])
    async with sandbox_env(faults=faults) as env:
        client = env.client(env.settings(retry=RetrySettings(backoff_base_seconds=0.01, backoff_max_seconds=0.05)))
        result = await client.sync_leads([{"email": "t@example.com"}])
        assert result.outcomes[0].status == "created"
        stats = client.transport.stats
        assert stats.retry_reasons == {"throttle": 2, "backoff": 1}
        assert stats.resends() == {"backoff": 1, "in_process": 0, "throttle": 2} and stats.retries == 3


async def test_unconfirmed_variants_record_level_1025_and_errors_key_are_handled() -> None:
    instance = InstanceConfig(preset="kaltura",
                              behaviour=BehaviourConfig(unknown_status_level="record", activity_skip_key="errors"))
    async with sandbox_env(instances=[instance]) as env:
        client = env.client()
        leads = await client.sync_leads([{"email": "v@example.com"}])
        lead_id = leads.lead_ids["v@example.com"]
        out = await client.sync_program_member_status(kp.PROGRAM_ID, "Not A Status", [lead_id, lead_id + 1])
        assert [(o.seq, o.status, o.reason_code) for o in out] == [(0, "failed", "1025"), (1, "failed", "1025")]
        acts = await client.add_custom_activities([
            ActivityRecord(lead_id=999_999, activity_type_id=kp.ACTIVITY_TYPE_ID,
                           activity_date=datetime(2026, 3, 4, 14, 0, tzinfo=UTC), primary_attribute_value="e"),
        ])
        assert (acts[0].status, acts[0].reason_code, acts[0].reason) == ("failed", "1004", "Lead not found")


async def test_a_record_too_large_for_one_call_is_failed_without_being_sent() -> None:
    async with sandbox_env() as env:
        client = env.client()
        result = await client.sync_leads([{"email": "small@example.com"},
                                          {"email": "huge@example.com", "firstName": "x" * 1_100_000}])
        assert result.outcomes[0].status == "created"
        assert (result.outcomes[1].status, result.outcomes[1].reason_code) == ("failed", "http_413")
        assert result.outcomes[1].classification is ErrorClass.PERMANENT
        assert env.count("http_413") == 0  # refused locally: Marketo never saw it


async def test_credentials_revoked_between_two_chunks_keep_the_first_chunks_outcomes() -> None:
    """An activities call of 301 records is two requests (§7.1: 300 per call). Identity refuses the
    token after the first was applied: its records stay "created" (insert-only: taken as unsent they
    would be sent twice); the second chunk's fail as auth_refused, certainly not applied."""
    async with sandbox_env("kaltura") as env:
        client = env.client()
        leads = await client.sync_leads([{"email": "chunks@example.com"}])
        lead_id = leads.lead_ids["chunks@example.com"]
        when = datetime(2026, 3, 4, 14, 0, tzinfo=UTC)
        records = [ActivityRecord(lead_id=lead_id, activity_type_id=kp.ACTIVITY_TYPE_ID, activity_date=when,
                                  primary_attribute_value=f"1_e{i}") for i in range(301)]
        call = client.transport.call
        requests = 0

        async def then_revoke(*args: Any, **kwargs: Any) -> Any:
            nonlocal requests
            requests += 1
            if requests == 2:  # the second chunk: an admin rotated the secret, the token died
                env.inst.clients.clear()
                env.inst.tokens.expire_all(env.manual.time())
            return await call(*args, **kwargs)

        client.transport.call = then_revoke  # type: ignore[method-assign]
        outcomes = await client.add_custom_activities(records)
        assert [o.seq for o in outcomes] == list(range(301))
        assert {o.status for o in outcomes[:300]} == {"created"}
        assert len(env.inst.activities) == 300
        assert (outcomes[300].status, outcomes[300].reason_code) == ("failed", "kmsync.auth_refused")
        assert not outcomes[300].maybe_applied
