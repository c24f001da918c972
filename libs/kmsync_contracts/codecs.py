"""JSON codecs for topic records: encode a contract model, decode and validate what a topic holds.

Decoding validates against the topic's contract and raises ContractError with field-level
messages, so a consumer can dead-letter exactly what is wrong and keep going.
"""

from __future__ import annotations

from dataclasses import is_dataclass
from enum import Enum
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_json

from kmsync_contracts.topics import TopicSpec

M = TypeVar("M")


class ContractError(ValueError):
    """A record does not match its contract. `problems` lists one message per bad field."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.what = what
        self.problems = problems
        super().__init__(f"{what}: " + "; ".join(problems))


#: A field whose path contains one of these never has its value echoed in an error message.
SENSITIVE_WORDS = ("secret", "password", "token")


#: The prefixes pydantic puts before a validator's own message; the field path says where, the
#: message says what, so they add nothing.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: 'field.path: message (got value)', naming the value once.

    The value is left out when the field is sensitive (a secret), when it is a mapping or list (the
    message names what inside it is wrong) and when the message already quotes it."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "(record)"
        message = err["msg"]
        for prefix in _PYDANTIC_PREFIXES:
            message = message.removeprefix(prefix)
        got = err.get("input")
        sensitive = any(word in path.lower() for word in SENSITIVE_WORDS)
        quoted = f"{got!r:.60}"
        shown = ("" if sensitive or isinstance(got, dict | list) or got is None or quoted in message
                 else f" (got {quoted})")
        lines.append(f"{path}: {message}{shown}")
    return lines


def encode(record: BaseModel) -> bytes:
    """A contract record as compact UTF-8 JSON: the model's own pydantic-core serializer straight to
    bytes, the same bytes as ``model_dump_json().encode()`` without its str round trip (18-30 % less
    CPU per record; orjson and msgspec measured slower: docs/decisions.md, `kmsync bench codecs`)."""
    return record.__pydantic_serializer__.to_json(record)


#: Config keys that change how a model serializes: a model with any of them is not plain.
_SERIALIZING_CONFIG = ("alias_generator", "serialize_by_alias", "ser_json_timedelta", "ser_json_temporal",
                       "ser_json_bytes", "ser_json_inf_nan", "use_enum_values", "json_encoders")
#: Per model class: whether encode_fields() may encode it from its fields (plain_model()).
_PLAIN: dict[type[BaseModel], bool] = {}


def plain_model(model: type[BaseModel]) -> bool:
    """Whether a model's JSON is its fields' values as pydantic-core encodes them anyway: no aliases,
    serializers, computed fields or serialization settings, and no field that is itself a model (a
    typed model field writes its declared class's fields, inference a subclass's own; no enum or
    dataclass either)."""
    decorators = model.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers or decorators.computed_fields:
        return False
    if any(model.model_config.get(key) is not None for key in _SERIALIZING_CONFIG):
        return False
    return not any(info.alias is not None or info.serialization_alias is not None or info.exclude
                   or getattr(info, "exclude_if", None) is not None  # pydantic >= 2.11: left out when true
                   or _typed_differently(info.annotation) for info in model.model_fields.values())


def _typed_differently(annotation: Any) -> bool:
    """Whether a field's type may serialize otherwise than its value's inferred type: a model (typed,
    its declared class's fields), an enum or a dataclass, anywhere in the annotation."""
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel | Enum) or is_dataclass(annotation)):
        return True
    return any(_typed_differently(arg) for arg in get_args(annotation))


def encode_fields(record: BaseModel) -> bytes:
    """encode(record), the same bytes, from the record's field values when its model is plain
    (plain_model()): pydantic-core's encoder infers each value's type instead of dispatching on the
    field's. For a `dict[str, str | int | float | bool | None]` field (an operation's record or
    attributes) the union's dispatch cost three times the inference (issue #22: an engagement row's two
    operations 11.5 -> 6.8 µs). tests/contracts/test_contracts.py compares it with encode() for every
    operation kind."""
    model = type(record)
    plain = _PLAIN.get(model)
    if plain is None:
        plain = _PLAIN[model] = plain_model(model)
    if plain:
        return to_json(record.__dict__)
    return record.__pydantic_serializer__.to_json(record)


def decode_as(adapter: TypeAdapter[M], data: bytes | str, what: str = "record") -> M:
    """Parse and validate JSON bytes against a model or union adapter."""
    try:
        return adapter.validate_json(data)
    except ValidationError as exc:
        raise ContractError(what, describe_validation_error(exc)) from None


def decode(topic: TopicSpec, data: bytes | str) -> Any:
    """Parse and validate a value read from `topic`."""
    return decode_as(topic.value, data, what=topic.name)


#: One adapter per model: building one costs more than validating a record with it (measured: 36 µs
#: per outcome with an adapter per call, 11 µs with a kept one).
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(model: type[M]) -> TypeAdapter[M]:
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter


def decode_model(model: type[M], data: bytes | str) -> M:
    return decode_as(_adapter(model), data, what=getattr(model, "__name__", "record"))
