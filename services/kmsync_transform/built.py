"""Operations built from values transform has already validated, without validating them again (issue #22).

Validating the two operations of an engagement row cost about 11 % of transform's engine thread
(pydantic 2.13: 7-8 µs per operation; `model_construct` is slower still, 13-19 µs, it loops over the
fields in Python). A `Trusted` builder sets the instance's fields directly, in the model's field order
(the serializer follows it, so `encode()` gives the very bytes of the validated model) with the
model's constant defaults. It is only for values that cannot fail the contract's checks: every one
comes from a record validated at the input boundary (`kmsync_contracts.codecs.decode`) or was made by
transform itself; the caller checks the rest (transformer.py, `_trusted_engagement`) and takes the
validating constructor otherwise. tests/transform/test_built.py compares both on varied input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from kmsync_transform.routing import Routed

M = TypeVar("M", bound=BaseModel)

_new = object.__new__
_set = object.__setattr__
#: A required field's place in Trusted.template.
_MISSING = object()


class Trusted(Generic[M]):
    """``Trusted(Model)(**fields)``: a Model instance holding `fields` (plus its constant defaults) as given."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        #: Every field in the model's order: its constant default, or _MISSING (to be given).
        self.template: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            constant = info.default_factory is None and not info.is_required()
            self.template[name] = info.default if constant else _MISSING
        self.required = frozenset(name for name, value in self.template.items() if value is _MISSING)

    def __call__(self, **fields: Any) -> M:
        values = self.template.copy()
        values.update(fields)  # a given field keeps its place in the model's order; an unknown one is added
        if len(values) != len(self.template) or not self.required <= fields.keys():
            raise TypeError(self._wrong(fields))
        instance = _new(self.model)
        _set(instance, "__dict__", values)
        _set(instance, "__pydantic_fields_set__", set(fields))
        _set(instance, "__pydantic_extra__", None)
        _set(instance, "__pydantic_private__", None)
        return instance

    def _wrong(self, fields: dict[str, Any]) -> str:
        unknown = sorted(set(fields) - set(self.template))
        if unknown:
            return f"{self.model.__name__} has no field {', '.join(unknown)}"
        return f"{self.model.__name__} needs its field {', '.join(sorted(self.required - fields.keys()))}"


def clean(text: str | None) -> bool:
    """Nothing for the contract's str_strip_whitespace to strip (Python strips at least what pydantic does)."""
    return text is None or text == text.strip()


def trusted_base(routed: Routed, now: datetime) -> bool:
    """Whether an operation's common fields pass the contract as they are: the record's were validated
    at decoding; the email (normalised by routing) and the Munchkin id are not empty and the clock's
    time is aware. Else the operation is built by its validating constructor."""
    return bool(routed.email and routed.munchkin_id) and now.utcoffset() is not None
