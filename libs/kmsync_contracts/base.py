"""The base every topic record shares: strict pydantic v2 models with a schema version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: A value a Marketo field can hold in kmsync's operations (strings, numbers, booleans, empty).
#: Numbers first: pydantic's smart-mode union keeps the member whose exact type a value has whatever the order, for
#: JSON and for Python values of the members' own types (tests/contracts/test_scalar.py; loose Python inputs such
#: as bytes or a non-str Enum may convert differently, and no kmsync path gives them), but it tries the members in
#: order, and most values of an engagement record or activity are numbers (24 of 29): validating one such dict takes
#: 5.8-6.1 µs against 7.5 µs with ``str`` first (issue #22; docs/benchmarks.md, "Section 4, session 16").
Scalar = int | float | str | bool | None

NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class ContractModel(BaseModel):
    """Strict, immutable record: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def utc_now() -> datetime:
    return datetime.now(UTC)
