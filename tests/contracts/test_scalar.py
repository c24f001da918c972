"""The order of ``Scalar``'s members is for speed only: every value validates to what the order the contracts
had before (strings first) gave, from JSON and from Python, and encodes to the same bytes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import BaseModel

from kmsync_contracts import encode
from kmsync_contracts.base import ContractModel, Scalar

#: Values of every member and the edges between them: 1 and 1.0, True and 1, "1" and 1, padded text, big ints.
EDGES: dict[str, Any] = {
    "int": 7, "zero": 0, "negative": -3, "float": 0.4, "whole_float": 1.0, "neg_zero": -0.0, "tiny": 5e-7,
    "huge_float": 1e16, "true": True, "false": False, "none": None, "text": "Keynote", "padded": "  x ",
    "empty": "", "digits": "1", "word_true": "true", "big_int": 2**70, "u64": 12345678901234567890,
}


class _StringsFirst(BaseModel):
    """The contracts' config with the members in the order they had before (the reference)."""

    model_config = ContractModel.model_config
    record: dict[str, str | int | float | bool | None]


class _Contract(ContractModel):
    record: dict[str, Scalar]


def _typed(values: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each value with its type: 1 == 1.0 == True in Python, and the types are what must match."""
    return {k: (type(v).__name__, "nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def test_the_members_order_changes_no_validated_value_from_json() -> None:
    raw = json.dumps({"record": EDGES})
    assert _typed(_Contract.model_validate_json(raw).record) == _typed(_StringsFirst.model_validate_json(raw).record)


def test_the_members_order_changes_no_validated_value_from_python() -> None:
    got = _Contract.model_validate({"record": EDGES}).record
    assert _typed(got) == _typed(_StringsFirst.model_validate({"record": EDGES}).record)
    assert got["padded"] == "x"  # the contracts' str_strip_whitespace still applies inside the union


@pytest.mark.parametrize("name", sorted(EDGES))
def test_the_members_order_changes_no_encoded_byte(name: str) -> None:
    record = {name: EDGES[name]}
    assert encode(_Contract(record=record)) == encode(_StringsFirst(record=record))


def test_scalar_refuses_what_it_refused() -> None:
    for bad in ([1], {"a": 1}):
        with pytest.raises(ValueError):
            _Contract.model_validate({"record": {"x": bad}})
