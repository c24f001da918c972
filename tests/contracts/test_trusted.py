"""kmsync_contracts.trusted (issue #22): a record built or encoded without a second validation is the
validated record, and whatever validation would change or refuse is validated; a constraint or validator
a model gains is checked (or closes the fast path), never passed unchecked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kmsync_contracts import encode
from kmsync_contracts.base import ContractModel, NonEmptyStr, Scalar
from kmsync_contracts.marketo_ops import (
    CustomActivity,
    CustomObjectUpsert,
    LeadUpsert,
    ProgramMemberData,
    ProgramMemberStatus,
)
from kmsync_contracts.outcomes import RecordOutcome
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.trusted import FastPath, copied_from

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ACTIVITY: dict[str, Any] = dict(
    op_id="custom_activity:1", munchkin_id="123-ABC-456", partner_id=100, virtual_event_id=7,
    email="ann@example.com", source_time=T0, emitted_at=T0, activity_type="userSessionEngagement",
    primary_attribute_value="0_keynote", activity_date=T0, attributes={"plays": 1, "rate": 0.5, "name": "Zoë"})


class Named(ContractModel):
    name: NonEmptyStr
    count: int = Field(default=1, ge=1)
    values: dict[str, Scalar] = Field(default_factory=dict)
    at: AwareDatetime | None = None


class Counting:
    """A model's validator that counts its calls."""

    def __init__(self, validator: Any) -> None:
        self.validator, self.calls = validator, 0

    def validate_python(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.validator.validate_python(*args, **kwargs)


def same(built: BaseModel, validated: BaseModel) -> None:
    """The very model validation makes: equal, the same bytes, fields set and field order."""
    assert built == validated
    assert encode(built) == encode(validated)
    assert built.model_fields_set == validated.model_fields_set
    assert list(built.__dict__) == list(validated.__dict__)


@pytest.mark.parametrize("model", [LeadUpsert, ProgramMemberStatus, ProgramMemberData, CustomObjectUpsert,
                                   CustomActivity, RecordOutcome])
def test_every_operation_and_the_outcome_have_an_open_fast_path(model: type[BaseModel]) -> None:
    fast = FastPath(model)
    assert fast.open, fast.reasons
    assert set(fast.checks) == set(model.model_fields)


def test_a_built_record_is_the_validated_one_on_the_installed_pydantic() -> None:
    """Pins what the builder relies on (an instance's __dict__, fields set, extra, private) on this pydantic."""
    built = FastPath(CustomActivity).build(**ACTIVITY)
    same(built, CustomActivity(**ACTIVITY))
    assert (built.schema_version, built.kind) == (1, "custom_activity")
    assert built.model_copy(update={"email": "b@x.com"}).email == "b@x.com"
    with pytest.raises(ValidationError, match="frozen"):
        built.email = "c@x.com"  # type: ignore[misc]
    assert built.model_dump() == CustomActivity(**ACTIVITY).model_dump()


def test_a_record_of_valid_values_is_not_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = FastPath(CustomActivity)

    class Refusing:
        def validate_python(self, *_: Any, **__: Any) -> None:
            raise AssertionError("validated")
    monkeypatch.setattr(CustomActivity, "__pydantic_validator__", Refusing())
    assert fast.build(**ACTIVITY).op_id == "custom_activity:1"


@pytest.mark.parametrize(("field", "value", "kept"), [
    ("email", " ann@example.com\n", "ann@example.com"),      # stripped
    ("activity_type", ReasonCode.UNKNOWN, str(ReasonCode.UNKNOWN)),  # a str subclass made a str
    ("partner_id", True, 1),                                 # a bool made an int
    ("attributes", {" plays": 1}, {"plays": 1}),             # a padded key stripped
    ("attributes", {"name": "Zoë\u3000"}, {"name": "Zoë"}),  # a padded value stripped
])
def test_what_validation_would_change_is_validated(field: str, value: Any, kept: Any) -> None:
    fields = {**ACTIVITY, field: value}
    built = FastPath(CustomActivity).build(**fields)
    assert getattr(built, field) == kept and type(getattr(built, field)) is type(kept)
    same(built, CustomActivity(**fields))


@pytest.mark.parametrize(("field", "value"), [
    ("email", ""), ("email", "  "), ("partner_id", 0), ("emitted_at", datetime(2026, 1, 1)),
    ("attributes", {"x": [1]}), ("attributes", "not a dict"), ("op_id", None),
    ("schema_version", [1]),  # unhashable: refused by validation, not a TypeError of the literal's check
])
def test_what_validation_would_refuse_is_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        FastPath(CustomActivity).build(**{**ACTIVITY, field: value})


def test_a_none_for_a_tuple_is_refused_by_validation_before_any_tuple_was_checked() -> None:
    """A tuple check remembers the last tuple it accepted; before the first, None must not look remembered."""
    fields = {k: v for k, v in ACTIVITY.items() if k not in ("activity_type", "primary_attribute_value",
                                                             "activity_date", "attributes")}
    with pytest.raises(ValidationError, match="dedupe_fields"):
        FastPath(CustomObjectUpsert).build(**fields, object_name="o", dedupe_fields=None, record={})


def test_the_builder_names_a_missing_or_unknown_field() -> None:
    build = FastPath(CustomActivity).build
    with pytest.raises(TypeError, match="needs its field .*op_id"):
        build(**{k: v for k, v in ACTIVITY.items() if k != "op_id"})
    given = FastPath(CustomActivity, {"op_id": NonEmptyStr, "attributes": dict[str, Scalar]}).build
    for missing in ("op_id", "email"):  # a required field taken as given, one checked
        with pytest.raises(TypeError, match=f"needs its field .*{missing}"):
            given(**{k: v for k, v in ACTIVITY.items() if k != missing})
    with pytest.raises(TypeError, match="needs its field .*op_id"):  # and a value that fails its check
        given(**{k: v for k, v in ACTIVITY.items() if k != "op_id"} | {"email": " padded"})
    with pytest.raises(TypeError, match="has no field colour"):
        build(**ACTIVITY, colour="red")


@pytest.mark.parametrize("space", ["\t", "\n", "\x0b", "\x0c", "\r", " ", "\x85", "\xa0", "\u1680", "\u2000",
                                   "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"])
def test_what_pydantic_strips_python_strips_too(space: str) -> None:
    """The string checks rely on it: Unicode White_Space (what pydantic-core trims) is whitespace to str.strip()."""
    check = FastPath(Named).checks["name"]
    assert not check(f"x{space}") and not check(f"{space}x") and check(f"x{space}x")
    assert Named(name=f"t{space}").name == "t"
    assert not FastPath(Named).checks["values"]({"k": f"v{space}"})


def test_a_pattern_is_checked_as_pydantic_searches_it() -> None:
    check = FastPath(RecordOutcome).checks["person_key"]
    assert check("email#0af") and check(None)
    assert not check("email#0AF") and not check("x-email#0af") and not check("email#0af\n")


def test_a_literal_takes_its_own_type_only() -> None:
    check = FastPath(RecordOutcome).checks["schema_version"]
    assert check(1) and not check(True) and not check(1.0)
    assert not FastPath(RecordOutcome).checks["kind"](ReasonCode.UNKNOWN)


def test_a_field_is_taken_as_given_only_with_the_constraints_it_was_validated_against() -> None:
    assert FastPath(Named, {"name": NonEmptyStr, "values": dict[str, Scalar]}).given == {"name", "values"}
    assert FastPath(Named, {"name": str, "count": NonEmptyStr}).given == frozenset()
    # an int > 0 passes an optional int > 0: given; not the other way round
    assert FastPath(RecordOutcome, copied_from(CustomActivity, "op_id", "partner_id")).given == {"op_id", "partner_id"}
    assert FastPath(CustomActivity, copied_from(RecordOutcome, "op_id", "partner_id")).given == {"op_id"}


def test_a_max_length_the_model_gains_is_checked_on_a_given_field() -> None:
    """The guard: a constraint added to a field the caller vouches for makes that field checked again."""
    class Longer(Named):
        name: Annotated[str, Field(min_length=1, max_length=3)]

    fast = FastPath(Longer, {"name": NonEmptyStr})
    assert fast.open and "name" not in fast.given
    assert fast.build(name="abc").name == "abc"
    with pytest.raises(ValidationError, match="at most 3 characters"):
        fast.build(name="abcd")


def test_a_field_validator_the_model_gains_is_run_or_validates() -> None:
    class Upper(Named):
        @field_validator("name")
        @classmethod
        def _upper(cls, v: str) -> str:
            return v.upper()

    fast = FastPath(Upper, {"name": NonEmptyStr})
    assert fast.open and "name" not in fast.given
    assert fast.build(name="ABC").name == "ABC"  # kept as it is by the validator: not validated
    built = fast.build(name="abc")  # changed by it: validated
    assert built.name == "ABC" and built == Upper(name="abc")

    class Before(Named):
        @field_validator("name", mode="before")
        @classmethod
        def _before(cls, v: str) -> str:
            return v

    closed = FastPath(Before, {"name": NonEmptyStr})
    assert not closed.open and any("name" in why for why in closed.reasons)


def test_what_the_checks_do_not_understand_closes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    class Multiple(Named):
        count: int = Field(default=2, multiple_of=2)

    class Listed(Named):
        items: list[int] = Field(default_factory=list)

    class Checked(Named):
        @model_validator(mode="after")
        def _whole(self) -> Checked:
            return self

    class Lowered(Named):
        model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, str_to_lower=True)

    class Defaulted(Named):
        count: int = Field(default=2, ge=1, validate_default=True)

    for model in (Multiple, Listed, Checked, Lowered, Defaulted):
        fast = FastPath(model)
        assert not fast.open and fast.reasons, model.__name__
        counting = Counting(model.__pydantic_validator__)
        monkeypatch.setattr(model, "__pydantic_validator__", counting)
        fast.build(name="ann")
        assert counting.calls == 1, model.__name__


def test_encoded_values_are_what_the_validated_model_encodes_to() -> None:
    times = [T0, datetime(2026, 12, 6, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=-7, minutes=-30)))]
    fast = FastPath(RecordOutcome)
    assert fast.orjson_writes
    for at in times:
        values = dict(schema_version=1, op_id="o", munchkin_id="m", kind="lead_upsert", status="created",
                      marketo_id=None, reason_code=None, reason='"q" \u2028 \x1f \\ /', api="rest", attempts=1,
                      source_time=at, decided_at=at, partner_id=1, virtual_event_id=2, session_id=None,
                      person_key="email#0a", lead_id=3, request_id=None)
        assert fast.encode_values(values) == encode(RecordOutcome(**values))
        padded = {**values, "reason": " padded "}
        assert fast.encode_values(padded) == encode(RecordOutcome(**padded))
        with pytest.raises(ValidationError):
            fast.encode_values({**values, "reason": "lone \ud800"})  # orjson refuses it, then the contract does
    assert not FastPath(CustomActivity).orjson_writes  # its floats are written by pydantic-core


def _outcome_values(at: datetime) -> dict[str, Any]:
    return dict(schema_version=1, op_id="o", munchkin_id="m", kind="lead_upsert", status="created",
                marketo_id=None, reason_code=None, reason=None, api="rest", attempts=1, source_time=at,
                decided_at=at, partner_id=1, virtual_event_id=2, session_id=None, person_key="email#0a",
                lead_id=3, request_id=None)


def test_encoded_values_in_another_order_or_under_another_name_are_not_written_as_given() -> None:
    """orjson writes a dict's keys in its own order: only the model's own order and names take the fast path."""
    fast, values = FastPath(RecordOutcome), _outcome_values(T0)
    reordered = dict(reversed(list(values.items())))
    assert fast.encode_values(reordered) == encode(RecordOutcome(**values))
    renamed = {("reasn" if k == "reason" else k): v for k, v in values.items()}
    with pytest.raises(ValidationError):
        fast.encode_values(renamed)


def test_an_offset_with_seconds_is_encoded_as_pydantic_encodes_it() -> None:
    """orjson rounds a sub-minute UTC offset where pydantic-core truncates it (+00:19:32 → +00:20 vs +00:19)."""
    odd = datetime(1850, 1, 1, tzinfo=timezone(timedelta(minutes=19, seconds=32)))
    values = _outcome_values(odd)
    assert FastPath(RecordOutcome).encode_values(values) == encode(RecordOutcome(**values))


def test_private_attributes_post_init_and_an_ignoring_config_close_the_fast_path() -> None:
    from pydantic import PrivateAttr

    class Private(Named):
        _cache: dict[str, int] = PrivateAttr(default_factory=dict)

    class PostInit(Named):
        def model_post_init(self, context: Any, /) -> None:
            if self.name == "refused":
                raise ValueError("refused after init")

    class Ignoring(BaseModel):
        model_config = ConfigDict(extra="ignore")
        name: str

    for model in (Private, PostInit, Ignoring):
        fast = FastPath(model)
        assert not fast.open and fast.reasons, model.__name__
    with pytest.raises(ValidationError):
        FastPath(PostInit).build(name="refused")


def test_a_field_left_out_when_a_condition_holds_is_not_a_plain_field() -> None:
    from kmsync_contracts.codecs import plain_model

    class Noted(Named):
        note: str | None = Field(default=None, exclude_if=lambda v: v is None)

    assert plain_model(Named) and not plain_model(Noted)
    assert not FastPath(Noted).orjson_writes


def test_the_pydantic_internals_the_fast_path_reads_are_those_it_was_written_against() -> None:
    """The fast path reads `__pydantic_decorators__`, FieldInfo's attributes and sets an instance's slots
    (libs/kmsync_contracts/trusted.py). A pydantic that adds a kind of decorator, a field attribute or an
    instance slot fails here: see whether the fast path must check or refuse it, then update this list."""
    from dataclasses import fields as dataclass_fields

    from pydantic._internal._decorators import DecoratorInfos
    from pydantic.fields import FieldInfo

    assert [f.name for f in dataclass_fields(DecoratorInfos)] == [
        "validators", "field_validators", "root_validators", "field_serializers", "model_serializers",
        "model_validators", "computed_fields"]
    assert set(FieldInfo.__slots__) == {
        "annotation", "default", "default_factory", "alias", "alias_priority", "validation_alias",
        "serialization_alias", "title", "field_title_generator", "description", "examples", "exclude",
        "exclude_if", "discriminator", "deprecated", "json_schema_extra", "frozen", "validate_default", "repr",
        "init", "init_var", "kw_only", "metadata", "_attributes_set", "_qualifiers", "_complete",
        "_original_assignment", "_original_annotation", "_final"}
    assert set(BaseModel.__slots__) == {"__dict__", "__pydantic_fields_set__", "__pydantic_extra__",
                                        "__pydantic_private__"}


class Bounded(ContractModel):
    low: int = Field(default=5, ge=5)
    below: int = Field(default=0, lt=10)
    upto: float = Field(default=0.0, le=1.0)
    finite: float = Field(default=0.0, allow_inf_nan=False)
    kind: str = Field(default="a", pattern="^[ab]$")


@pytest.mark.parametrize(("field", "value"), [
    ("low", 4), ("below", 10), ("upto", 1.5), ("finite", float("inf")), ("finite", float("nan")),
])
def test_bounds_refuse_through_the_compiled_checks(field: str, value: Any) -> None:
    """Through `accepts`/`build`, which run the model's compiled function (each check inline), and the
    field's check called alone: both are compiled from the check's one inline form."""
    fast = FastPath(Bounded)
    assert fast.open, fast.reasons
    assert fast.accepts({field: Bounded.model_fields[field].default})
    assert not fast.accepts({field: value}) and not fast.checks[field](value)
    with pytest.raises(ValidationError, match=field):
        fast.build(**{field: value})


def test_a_check_is_compiled_from_its_template_alone() -> None:
    """One source per check (review of issue #22: each was a lambda and a template, production ran one and the
    tests the other): the callable is the template compiled with its bound values, and carries that form."""
    from kmsync_contracts.trusted import _inline

    check = _inline("(type({v}) is int and {v} > {gt})", gt=3)
    assert check(4) and not check(3) and not check(4.0) and not check("4")
    text, names = check.kmsync_expr  # type: ignore[attr-defined]
    assert list(names.values()) == [3] and text == f"(type({{v}}) is int and {{v}} > {next(iter(names))})"


#: Values of every kind the contracts' fields hold, and what validation would change or refuse.
SAMPLES: list[Any] = [
    None, "", " ", "a", " a", "a\n", "Zoë\u3000", "email#0af", "email#0AF", "email#0af\n", "custom_activity",
    "lead_upsert", "created", "rest", "Registered", "SSO login", "userSessionEngagement", "123-ABC-456",
    ReasonCode.UNKNOWN, 0, 1, -1, 30, 2**70, True, False, 1.0, 0.5, float("nan"), float("inf"), T0,
    datetime(2026, 1, 1), datetime(1850, 1, 1, tzinfo=timezone(timedelta(minutes=19, seconds=32))),
    datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-7, minutes=-30))), (), ("entry_id",), (" email",),
    ("entry_id", "email"), (1, 2), (True, 2), [1, 2], {}, {"plays": 1, "rate": 0.5, "name": "Zoë"}, {" k": 1},
    {"k": [1]}, {"firstName": "Ann"}, {1: "a"},
]


@pytest.mark.parametrize("model", [LeadUpsert, ProgramMemberStatus, ProgramMemberData, CustomObjectUpsert,
                                   CustomActivity, RecordOutcome, Named, Bounded])
def test_a_check_called_alone_decides_as_the_compiled_model_function(model: type[BaseModel]) -> None:
    """Every field's check, called alone (what engagement_builders and these tests call), gives the answer the
    model's compiled function gives (what build and encode_values run), for every sample value."""
    fast = FastPath(model)
    for name, check in fast.checks.items():
        for value in SAMPLES:
            assert check(value) is fast.accepts({name: value}), (model.__name__, name, value)


def test_a_field_validator_that_refuses_makes_the_record_refused() -> None:
    class Refusing(Named):
        @field_validator("name")
        @classmethod
        def _no_bob(cls, v: str) -> str:
            if v == "bob":
                raise ValueError("no bob")
            return v

    fast = FastPath(Refusing)
    assert fast.open and fast.accepts({"name": "ann"}) and not fast.accepts({"name": "bob"})
    with pytest.raises(ValidationError, match="no bob"):
        fast.build(name="bob")


def test_a_str_literal_takes_its_own_values_as_plain_str_through_the_compiled_checks() -> None:
    fast, values = FastPath(RecordOutcome), _outcome_values(T0)
    assert fast.accepts(values)
    assert not fast.accepts({**values, "kind": "no_such_kind"})
    assert not fast.accepts({**values, "api": ReasonCode.UNKNOWN})  # a str subclass is made a str by validation


@pytest.mark.parametrize("pattern", [r"^a\sb$", r"^\w+$", "^[[:digit:]]+$", r"^a\z", "(?i)^ab$", "^é$"])
def test_a_pattern_the_two_regex_engines_may_read_apart_closes_the_fast_path(pattern: str) -> None:
    """Python's re and pydantic-core's Rust regex differ on escapes (\\s, \\w), POSIX classes, \\z and flags."""
    model = type("Patterned", (ContractModel,), {"__annotations__": {"p": str}, "p": Field(default="ab",
                                                                                        pattern=pattern)})
    fast: FastPath[BaseModel] = FastPath(model)
    assert not fast.open and any("pattern" in why for why in fast.reasons)


def test_a_field_is_not_taken_as_given_from_a_source_whose_validator_may_let_other_values_through() -> None:
    """A plain validator on the source's field replaces its type check: `-5` is a valid `Source.n` though the
    field says gt=0, so a target with the same declaration cannot take `n` as given from it."""
    class Source(ContractModel):
        n: int = Field(gt=0)

        @field_validator("n", mode="plain")
        @classmethod
        def _anything(cls, v: Any) -> Any:
            return v

    class Plain(ContractModel):
        n: int = Field(gt=0)

    class Target(ContractModel):
        n: int = Field(gt=0)

    assert Source(n=-5).n == -5
    assert "n" in FastPath(Target, copied_from(Plain, "n")).given
    fast = FastPath(Target, copied_from(Source, "n"))
    assert "n" not in fast.given
    with pytest.raises(ValidationError, match="greater than 0"):
        fast.build(n=Source(n=-5).n)
