"""Operations built without validating again (built.py, kmsync_contracts.trusted, issue #22) are the validated ones:
the same fields, the same bytes, the same fields set; where a value did not come from a validated
record and the contract would change or refuse it, the validating constructors still run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kmsync_config.tenants import TenantsConfig, parse_tenants
from kmsync_contracts import AttendeeStatus, SessionEngagement, encode
from kmsync_contracts.marketo_ops import (
    CustomActivity,
    CustomObjectUpsert,
    LeadUpsert,
    MarketoOperation,
    ProgramMemberData,
    ProgramMemberStatus,
)
from kmsync_contracts.topics import ATTENDEE_STATUS
from kmsync_contracts.trusted import FastPath
from kmsync_transform import built
from kmsync_transform import transformer as transformer_module
from kmsync_transform.dead_letters import SourceRef
from kmsync_transform.routing import RoutedEngagement, route
from kmsync_transform.status_map import MappedStatus
from kmsync_transform.transformer import Transformer, TransformState

from . import golden_inputs as golden
from .conftest import MUNCHKIN, T0, TENANTS
from .test_engagement import FULL

NOW = T0 + timedelta(hours=1)


def routed(snap: SessionEngagement, email: str = "ann@example.com") -> RoutedEngagement:
    return RoutedEngagement(email=email, munchkin_id=MUNCHKIN, source={"topic": "kaltura.session_engagement.v1"},
                            record=snap)


def validated(op: BaseModel) -> BaseModel:
    """The operation as its validating constructor builds it from the same field values."""
    return type(op)(**{name: getattr(op, name) for name in op.model_fields_set})


def ops(tenants: TenantsConfig, snap: SessionEngagement, **options: Any) -> list[MarketoOperation]:
    return Transformer(tenants, TransformState.in_memory(), clock=lambda: NOW, **options).apply(routed(snap)).ops


@pytest.mark.parametrize("metrics", [FULL, {}, {"plays": 1, "good_live_engagement_rate": 55.0},
                                     {"entry_name": "Ünïcode \u2028 name", "channel_name": "", "mic_on": 1e16}])
def test_trusted_operations_equal_the_validated_ones_byte_for_byte(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement], metrics: dict[str, Any],
) -> None:
    built = ops(tenants, engagement_record(**metrics))
    assert [op.kind for op in built] == ["custom_object_upsert", "custom_activity"]
    for op in built:
        again = validated(op)
        assert op == again
        assert encode(op) == encode(again)
        assert op.model_fields_set == again.model_fields_set
        assert list(op.__dict__) == list(again.__dict__)


def test_the_operations_are_not_validated_again(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
    status_record: Callable[..., AttendeeStatus], monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Refusing:
        def validate_python(self, *_: Any, **__: Any) -> None:
            raise AssertionError("validated again")
    # A lead upsert is validated (its constructor: cheaper than the fast path for it), the others are not.
    for model in (CustomObjectUpsert, CustomActivity, ProgramMemberStatus, ProgramMemberData):
        monkeypatch.setattr(model, "__pydantic_validator__", Refusing())
    assert len(ops(tenants, engagement_record(**FULL))) == 2
    status = route(ATTENDEE_STATUS, encode(status_record("registered")), SourceRef(), tenants, NOW).routed
    assert status is not None
    built = Transformer(tenants, TransformState.in_memory(), clock=lambda: NOW).apply(status).ops
    assert [op.kind for op in built] == ["lead_upsert", "program_member_status", "program_member_data"]


def test_a_session_name_with_spaces_from_the_tenants_file_is_stripped_as_before(
    engagement_record: Callable[..., SessionEngagement],
) -> None:
    """Session names come from the tenants file, not from a validated record: the constructor strips them
    (the content fingerprint, computed before, keeps the spaces, as it always did)."""
    spaced = {**TENANTS, "events": [{**TENANTS["events"][0], "sessions": [
        {"entry_id": "0_keynote", "name": " Keynote ", "channel_id": 7, "channel_name": "Main\t"}]}]}
    built = ops(parse_tenants(spaced, "spaced", check_secrets=False), engagement_record())
    obj = built[0]
    assert isinstance(obj, CustomObjectUpsert)
    assert (obj.record["entry_name"], obj.record["channel_name"]) == ("Keynote", "Main")
    assert obj == validated(obj)


def test_dedupe_fields_the_contract_refuses_are_still_refused(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
) -> None:
    with pytest.raises(ValidationError, match="dedupe_fields"):
        ops(tenants, engagement_record(), engagement_dedupe_fields=())
    spaced = ops(tenants, engagement_record(), engagement_dedupe_fields=(" entry_id ", "email"))
    assert spaced[0].dedupe_fields == ("entry_id", "email")  # type: ignore[union-attr]


def test_a_clock_without_a_time_zone_is_still_refused(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
) -> None:
    naive = datetime(2026, 11, 27, 10, 0)
    with pytest.raises(ValidationError, match="emitted_at"):
        Transformer(tenants, TransformState.in_memory(), clock=lambda: naive).apply(routed(engagement_record()))


def test_an_empty_email_is_still_refused(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
) -> None:
    transformer = Transformer(tenants, TransformState.in_memory(), clock=lambda: NOW)
    with pytest.raises(ValidationError, match="email"):
        transformer.apply(routed(engagement_record(), email=""))


def test_every_operation_of_the_golden_inputs_equals_its_validated_twin() -> None:
    """Statuses, labels, lead updates, engagement and polls of the golden set (overrides, padded and
    odd values included): each operation is the model its validating constructor gives."""
    tenants = golden.tenants_config()
    transformer = Transformer(tenants, TransformState.in_memory(), clock=lambda: golden.NOW)
    kinds = set()
    for (spec, raw), source in zip(golden.inputs(), golden.sources(golden.inputs()), strict=True):
        result = route(spec, raw, source, tenants, golden.NOW)
        if result.routed is None:
            continue
        for op in transformer.apply(result.routed).ops:
            again = validated(op)
            assert (op, encode(op), list(op.__dict__)) == (again, encode(again), list(again.__dict__))
            kinds.add(op.kind)
    assert kinds == {"lead_upsert", "program_member_status", "program_member_data", "custom_object_upsert",
                     "custom_activity"}


def test_a_padded_status_name_is_validated_and_stripped_as_before(
    tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tenants file refuses padded status names today; were one to reach _status, the constructor
    would strip it, as it always did."""
    def padded(record: AttendeeStatus, overrides: Any, *rest: Any) -> MappedStatus:
        return MappedStatus(" Registered ", 30, "Registered\t")
    monkeypatch.setattr(transformer_module, "map_status", padded)
    record = status_record("registered", first_name="Ann")
    routed_status = route(ATTENDEE_STATUS, encode(record), SourceRef(), tenants, NOW).routed
    assert routed_status is not None
    built = Transformer(tenants, TransformState.in_memory(), clock=lambda: NOW).apply(routed_status).ops
    by_kind = {op.kind: op for op in built}
    status = by_kind["program_member_status"]
    assert isinstance(status, ProgramMemberStatus)
    assert (status.status_name, status.granular_status) == ("Registered", "Registered")
    assert by_kind["lead_upsert"].fields["firstName"] == "Ann"  # type: ignore[union-attr]
    for op in built:
        assert op == validated(op)


def test_the_builders_check_every_field_but_what_was_validated_under_the_same_constraints() -> None:
    """Every operation's fast path is open (each constraint understood: kmsync_contracts.trusted) and takes
    as given only the fields copied from the Kaltura record, the op id and, for an engagement row whose
    session names pass, the record and attributes transform made; the rest is checked per value."""
    ids = {"op_id", "partner_id", "virtual_event_id", "source_time"}
    made = {"record", "attributes", "object_name", "activity_type"}
    want: dict[FastPath[Any], set[str]] = {built.ENGAGEMENT_OBJECT: ids | {"record", "object_name"},
            built.ENGAGEMENT_ACTIVITY: ids | {"attributes", "activity_type", "activity_date", "primary_attribute_value"},
            built.NAMED_OBJECT: ids, built.NAMED_ACTIVITY: ids | {"activity_date", "primary_attribute_value"},
            built.STATUS: ids, built.LABEL: ids}
    for fast, given in want.items():
        assert fast.open, fast.reasons
        assert fast.given == given, fast.model.__name__
        assert not (fast.given - ids - made - {"activity_date", "primary_attribute_value"})


def test_tenants_values_other_than_the_session_names_never_reach_a_record_taken_as_given(
    engagement_record: Callable[..., SessionEngagement],
) -> None:
    """`engagement_builders` takes an engagement row's record and attributes as given after checking only the
    session's name and channel name, the tenants-file values engagement_values puts in them today. If another
    tenants value (the event's name, its app guid) were put in them, the padded values
    here would be published unstripped and this comparison with the validated twins would fail."""
    event = {**TENANTS["events"][0], "name": "acme-summit \t", "app_guid": " guid\u3000"}
    padded = parse_tenants({**TENANTS, "events": [event]}, "padded", check_secrets=False)
    built = ops(padded, engagement_record(**FULL))
    assert [op.kind for op in built] == ["custom_object_upsert", "custom_activity"]
    for op in built:
        assert op == validated(op) and encode(op) == encode(validated(op))


def test_a_lead_upsert_is_built_by_validation(
    tenants: TenantsConfig, status_record: Callable[..., AttendeeStatus], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its validation costs less than the fast path's checks and instance (session 10, docs/benchmarks.md):
    the lead upsert of a status goes through its validating constructor, once."""
    calls: list[object] = []
    validator = LeadUpsert.__pydantic_validator__

    class Counting:
        def validate_python(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return validator.validate_python(*args, **kwargs)
    monkeypatch.setattr(LeadUpsert, "__pydantic_validator__", Counting())
    status = route(ATTENDEE_STATUS, encode(status_record("registered")), SourceRef(), tenants, NOW).routed
    assert status is not None
    made = Transformer(tenants, TransformState.in_memory(), clock=lambda: NOW).apply(status).ops
    assert [op.kind for op in made].count("lead_upsert") == 1 and len(calls) == 1


def test_a_sessions_names_are_checked_once_per_pair_of_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """engagement_builders runs on every engagement row; the names come from the tenants file, so their check
    is cached per (name, channel name): what passes takes the given record, what fails the named builders."""
    from kmsync_config.tenants import SessionConfig

    record_check = built.NAMED_OBJECT.checks["record"]
    seen: list[object] = []

    def counting(value: object) -> bool:
        seen.append(value)
        return record_check(value)
    monkeypatch.setitem(built.NAMED_OBJECT.checks, "record", counting)
    built._names_pass.cache_clear()
    plain = SessionConfig(entry_id="0_keynote", name="Keynote", channel_name="Main")
    padded = SessionConfig(entry_id="0_other", name=" Keynote", channel_name="Main")
    for _ in range(3):
        assert built.engagement_builders(plain) == (built.ENGAGEMENT_OBJECT, built.ENGAGEMENT_ACTIVITY)
        assert built.engagement_builders(padded) == (built.NAMED_OBJECT, built.NAMED_ACTIVITY)
    assert len(seen) == 2

    class Odd(str):
        pass
    assert built.engagement_builders(plain.model_copy(update={"name": Odd("Keynote")})) == (
        built.NAMED_OBJECT, built.NAMED_ACTIVITY)  # checked itself, not taken for the equal str
    assert len(seen) == 3
    built._names_pass.cache_clear()
