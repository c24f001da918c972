"""Engagement operations built without validating again (built.py, issue #22) are the validated ones:
the same fields, the same bytes, the same fields set; where a value did not come from a validated
record and the contract would change or refuse it, the validating constructors still run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from kmsync_config.tenants import TenantsConfig, parse_tenants
from kmsync_contracts import SessionEngagement, encode
from kmsync_contracts.marketo_ops import CustomActivity, CustomObjectUpsert, MarketoOperation
from kmsync_transform import transformer as transformer_module
from kmsync_transform.built import Trusted
from kmsync_transform.routing import RoutedEngagement
from kmsync_transform.transformer import Transformer, TransformState

from .conftest import EVENT, MUNCHKIN, T0, TENANTS
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


def test_the_engagement_operations_are_not_validated_again(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement], monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(**_: Any) -> None:
        raise AssertionError("validated again")
    monkeypatch.setattr(transformer_module, "CustomObjectUpsert", refuse)
    monkeypatch.setattr(transformer_module, "CustomActivity", refuse)
    assert len(ops(tenants, engagement_record(**FULL))) == 2


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


def test_the_builder_names_a_missing_or_unknown_field() -> None:
    build = Trusted(CustomActivity)
    with pytest.raises(TypeError, match="needs its field op_id"):
        build(munchkin_id=MUNCHKIN)
    with pytest.raises(TypeError, match="has no field colour"):
        build(colour="red")


def test_the_builder_fills_the_constant_defaults_in_field_order() -> None:
    fields = dict(op_id="custom_activity:1", munchkin_id=MUNCHKIN, partner_id=100, virtual_event_id=EVENT,
                  email="ann@example.com", source_time=T0, emitted_at=NOW, activity_type="userSessionEngagement",
                  primary_attribute_value="0_keynote", activity_date=T0, attributes={"plays": 1})
    built = Trusted(CustomActivity)(**fields)
    assert encode(built) == encode(CustomActivity(**fields))
    assert (built.schema_version, built.kind) == (1, "custom_activity")
