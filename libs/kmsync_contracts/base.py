"""The base every topic record shares: strict pydantic v2 models with a schema version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

#: A value a Marketo field can hold in kmsync's operations (strings, numbers, booleans, empty).
Scalar = str | int | float | bool | None

NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class ContractModel(BaseModel):
    """Strict, immutable record: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def utc_now() -> datetime:
    return datetime.now(UTC)
