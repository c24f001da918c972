"""Per-record outcomes, aligned with the caller's input order, parsed from Marketo's result arrays.

docs/reference/marketo-api.md §4: results come back in input order, every endpoint but Sync Leads carries ``seq``;
skipped items carry ``reasons[]`` (Add Custom Activities: ``errors[]``, accept both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kmsync_contracts.outcomes import OutcomeStatus
from kmsync_contracts.reasons import ReasonCode
from kmsync_marketo.errors import CallFailure, ErrorClass, classify

_STATUS_MAP: dict[str, OutcomeStatus] = {
    "created": "created",
    "updated": "updated",
    "added": "created",  # Add Custom Activities (§7.1)
    "deleted": "updated",
}


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What became of input record ``seq`` (0-based position in the list the caller passed).

    A slotted dataclass, not a pydantic model: the client builds one per record of every answer from
    values it has checked itself (nothing here is a trust boundary). Never changed once made
    (``dataclasses.replace`` makes a changed copy), but not ``frozen``, whose ``__init__`` sets each
    field through ``object.__setattr__``: measured in one run (load 3), 4.4 µs as a pydantic model, 8.4 µs as a
    frozen dataclass, 3.1 µs so (issue #22)."""

    seq: int
    status: OutcomeStatus
    #: Lead id, marketoGUID or activity id, as a string.
    marketo_id: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    #: What the caller should do with a failed record; None when it succeeded.
    classification: ErrorClass | None = None
    #: Marketo's own word for it (created/updated/added/skipped/imported...).
    marketo_status: str | None = None
    #: A bulk warning (row imported anyway).
    warning: str | None = None
    #: Failed without a success answer, but Marketo may have applied it (errors.CallFailure.maybe_applied).
    maybe_applied: bool = False
    #: The answering call's ``requestId`` (§4.1), to quote to Adobe support and to trace one record.
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def retryable(self) -> bool:
        return self.status == "failed" and self.classification in (
            ErrorClass.RETRY_SOON,
            ErrorClass.RETRY_LATER,
        )


def failed_outcome(
    seq: int, code: str | None, message: str, classification: ErrorClass, maybe_applied: bool = False,
    request_id: str | None = None,
) -> Outcome:
    return Outcome(
        seq=seq,
        status="failed",
        reason_code=code,
        reason=message,
        classification=classification,
        maybe_applied=maybe_applied,
        request_id=request_id,
    )


def failed_outcomes(failure: CallFailure, offset: int, count: int) -> list[Outcome]:
    """Every record of a failed call (inputs ``offset .. offset+count-1``) failed the same way."""
    return [failed_outcome(offset + i, failure.code, failure.reason, failure.error_class, failure.maybe_applied)
            for i in range(count)]


IdKey = str | tuple[str, ...] | None


def outcome_from_item(seq: int, item: Mapping[str, Any], id_key: IdKey, request_id: str | None = None) -> Outcome:
    """One result item → outcome. ``id_key`` names the id Marketo returns (id, leadId, marketoGUID),
    or several to try in order; ``request_id``: the answering call's (§4.1)."""
    return _outcome_of(seq, item, (id_key,) if isinstance(id_key, str) else id_key or (), request_id)


def _outcome_of(seq: int, item: Mapping[str, Any], keys: tuple[str, ...], request_id: str | None) -> Outcome:
    """``outcome_from_item`` with the id keys as a tuple (worked out once per answer by ``align_results``)."""
    raw_status = item.get("status", "")
    if type(raw_status) is not str:
        raw_status = str(raw_status)
    marketo_id: str | None = None
    for key in keys:
        if item.get(key) is not None:
            marketo_id = str(item[key])
            break
    if raw_status in _STATUS_MAP:
        return Outcome(seq=seq, status=_STATUS_MAP[raw_status], marketo_id=marketo_id, marketo_status=raw_status,
                       request_id=request_id)
    reasons = item.get("reasons") or item.get("errors") or []
    first = reasons[0] if reasons and isinstance(reasons[0], Mapping) else {}
    code = str(first.get("code")) if first.get("code") is not None else None
    message = str(first.get("message", "")) or None
    if raw_status == "skipped":
        info = classify(code)
        status: OutcomeStatus = "skipped" if info.error_class is ErrorClass.NOT_AN_ERROR else "failed"
        return Outcome(
            seq=seq,
            status=status,
            marketo_id=marketo_id,
            reason_code=code,
            reason=message or info.meaning,
            classification=None if status == "skipped" else info.error_class,
            marketo_status=raw_status,
            request_id=request_id,
        )
    return Outcome(
        seq=seq,
        status="failed",
        marketo_id=marketo_id,
        reason_code=code,
        reason=message or f"unexpected result status {raw_status!r}",
        classification=ErrorClass.PERMANENT,
        marketo_status=raw_status or None,
        request_id=request_id,
    )


def request_id_of(body: Mapping[str, Any]) -> str | None:
    """The call's ``requestId`` (§4.1) when the body has one: its outcomes carry it (built with it, not
    copied afterwards: a ``model_copy`` per record was measurable, issue #22)."""
    request_id = body.get("requestId")
    return request_id if isinstance(request_id, str) and request_id else None


def align_results(
    results: Sequence[Any], count: int, offset: int, id_key: IdKey, request_id: str | None = None
) -> list[Outcome]:
    """Outcomes for inputs ``offset .. offset+count-1`` of the caller's list, each with ``request_id``.

    Items with ``seq`` are placed by it; items without are placed by position (Sync Leads). An input
    with no result item is reported failed and retryable (upserts are safe to replay), and as
    maybe applied (the call ran).
    """
    placed: dict[int, Outcome] = {}
    keys = (id_key,) if isinstance(id_key, str) else id_key or ()
    for position, item in enumerate(results):
        if type(item) is not dict and not isinstance(item, Mapping):  # a dict, always: no ABC check for it
            continue
        local = item.get("seq", position)
        try:
            local = int(local)
        except (TypeError, ValueError):
            local = position
        if 0 <= local < count and local not in placed:
            placed[local] = _outcome_of(offset + local, item, keys, request_id)
    return [
        placed.get(i)
        or failed_outcome(
            offset + i, ReasonCode.MISSING_RESULT, "Marketo returned no result for this record", ErrorClass.RETRY_SOON,
            maybe_applied=True, request_id=request_id,
        )
        for i in range(count)
    ]
