"""encode_fields() gives encode()'s bytes (issue #22): for every operation kind, every plain sample and
awkward values (non-ASCII, control characters, quotes, large and small floats, big integers, None,
booleans); models that are not plain take encode()'s path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from enum import Enum

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from kmsync_contracts import CustomActivity, CustomObjectUpsert, LeadUpsert, encode
from kmsync_contracts.codecs import encode_fields, plain_model
from kmsync_contracts.kaltura_records import AttendeeStatus

from .test_contracts import OP, OPS, SAMPLES

AWKWARD: dict[str, str | int | float | bool | None] = {
    "text": 'Ünïcode "quoted" \\ back\tslash\n\x00\x1f\u2028 \U0001f600', "empty": "", "int": 2**70,
    "negative": -3, "zero": 0.0, "tiny": 1e-7, "huge": 1e16, "third": 1 / 3, "whole": 7.0, "yes": True,
    "no": False, "none": None,
}


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_every_operation_kind_encodes_to_the_same_bytes(op: BaseModel) -> None:
    assert plain_model(type(op))
    assert encode_fields(op) == encode(op)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_encodes_to_the_same_bytes(name: str) -> None:
    assert encode_fields(SAMPLES[name]) == encode(SAMPLES[name])


def test_awkward_values_and_time_zones_encode_to_the_same_bytes() -> None:
    berlin = timezone(timedelta(hours=1))
    ops = [
        CustomObjectUpsert(**{**OP, "source_time": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=berlin)},
                           object_name="o", dedupe_fields=("a", "b"), record=AWKWARD),
        CustomActivity(**OP, activity_type="t", primary_attribute_value="p", activity_date=datetime.now(UTC),
                       attributes=AWKWARD),
        LeadUpsert(**OP, fields=AWKWARD),
    ]
    for op in ops:
        assert encode_fields(op) == encode(op)


class Colour(Enum):
    RED = "red"


class Aliased(BaseModel):
    value: int = Field(serialization_alias="v")


class Serialized(BaseModel):
    when: datetime

    @field_serializer("when")
    def _epoch(self, when: datetime) -> float:
        return when.timestamp()


class Holder(BaseModel):
    inner: Aliased | None = None
    colour: Colour = Colour.RED


class ByAlias(BaseModel):
    model_config = ConfigDict(ser_json_timedelta="float")
    gap: timedelta = timedelta(seconds=1)


@pytest.mark.parametrize("record", [Aliased(value=1), Serialized(when=datetime.now(UTC)), Holder(inner=Aliased(value=1)),
                                    ByAlias()], ids=lambda r: type(r).__name__)
def test_a_model_that_is_not_plain_is_encoded_as_encode_does(record: BaseModel) -> None:
    assert not plain_model(type(record))
    assert encode_fields(record) == encode(record)


def test_an_attendee_status_is_not_plain_its_status_is_an_enum() -> None:
    assert not plain_model(AttendeeStatus)
