"""What became of one operation in one attempt, the retry rule, and the records that report it (pure).

A failed record that Marketo's error table calls retryable is retried alone (never its whole call)
after an exponential backoff with jitter; when attempts run out, or the failure is permanent, the
record is dead-lettered with Marketo's reason code (docs/reference/streaming.md §4: errors.retry.*, DLQ).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kmsync_common.email_hash import hash_email
from kmsync_contracts.marketo_ops import (
    CustomActivity,
    CustomObjectUpsert,
    MarketoOperation,
    OperationBase,
    OperationKind,
)
from kmsync_contracts.outcomes import DeadLetter, OutcomeStatus, RecordOutcome
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.seed import PRIMARY_FIELD
from kmsync_contracts.trusted import FastPath, copied_from
from kmsync_sink.pending import PendingOp


@dataclass(slots=True)
class Decision:
    """What became of one operation in one attempt. Never changed once made (``dataclasses.replace``
    makes a changed copy); not ``frozen``: one is built per record of every answer, and a frozen
    dataclass's ``__init__`` took 5.6 µs against 2.2 µs (issue #22)."""

    pending: PendingOp
    status: OutcomeStatus
    marketo_id: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    #: Failed, and trying the same record again later may succeed.
    retryable: bool = False
    api: Literal["rest", "bulk"] = "rest"
    #: A failed custom activity that Marketo may have applied (an ambiguous answer, or a write whose
    #: verification failed): its intent stays, and it is verified before it is sent again.
    maybe_applied: bool = False
    #: Monotonic time before which it is not retried (a verification waits for the intent to age).
    retry_at: float | None = None
    #: Marketo's requestId of the call that decided it, when there was an answer (marketo-api.md §4.1).
    request_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def backoff(self, attempts: int, rng: random.Random) -> float:
        """Equal jitter: between half and all of min(max, base × 2^(attempts-1))."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return ceiling * (0.5 + 0.5 * rng.random())


def settle(
    decisions: list[Decision], now: float, policy: RetryPolicy, rng: random.Random,
    retry_at: dict[int, float] | None = None,
) -> tuple[list[Decision], list[PendingOp]]:
    """Split into final decisions and records to retry (their ``not_before`` set).

    ``retry_at`` (attempts → time) is shared by the caller across one window's calls, so records
    that failed together are retried together in one window (full calls) rather than trickling."""
    final: list[Decision] = []
    retry: list[PendingOp] = []
    shared = retry_at if retry_at is not None else {}
    for d in decisions:
        if d.status != "failed" or not d.retryable:  # most of them: decided
            final.append(d)
            continue
        p = d.pending
        if d.retry_at is not None:
            pass  # waits for a time of its own (a verification too early); no attempt was spent
        elif d.maybe_applied and not p.final_check:
            # Never final without a look at Marketo: out of attempts, it gets one more, to verify only.
            p.uncertain_code = p.uncertain_code or d.reason_code
            p.final_check = p.attempts >= policy.max_attempts
        elif p.attempts >= policy.max_attempts:
            final.append(d)
            continue
        n = p.attempts
        if n not in shared:
            shared[n] = now + policy.backoff(n, rng)
        p.not_before = max(shared[n], d.retry_at or 0.0)
        retry.append(p)
    return final, retry


def session_of(op: MarketoOperation) -> str | None:
    """The Kaltura session (entry id) an operation is about: a custom object's primary field, a custom
    activity's primary attribute; None for lead and program member writes."""
    if isinstance(op, CustomObjectUpsert):
        entry = op.record.get(PRIMARY_FIELD)
        return str(entry) if entry not in (None, "") else None
    if isinstance(op, CustomActivity):
        return op.primary_attribute_value
    return None


def lead_id_of(d: Decision, known: int | None) -> int | None:
    """The person's lead id: what a lead upsert returned, else what the sink knew (``known``)."""
    if d.pending.op.kind == "lead_upsert" and not d.failed and d.marketo_id and d.marketo_id.isdigit():
        return int(d.marketo_id)
    return known


def outcome_values(d: Decision, decided_at: datetime, known_lead_id: int | None = None) -> dict[str, Any]:
    """The outcome's fields, in the contract's order, with the correlation keys kmsync trace finds a person
    by (issue #19)."""
    op = d.pending.op
    return {
        "schema_version": 1, "op_id": op.op_id, "munchkin_id": op.munchkin_id, "kind": op.kind,
        "status": d.status, "marketo_id": d.marketo_id, "reason_code": d.reason_code, "reason": d.reason,
        "api": d.api, "attempts": max(1, d.pending.attempts), "source_time": op.source_time,
        "decided_at": decided_at, "partner_id": op.partner_id, "virtual_event_id": op.virtual_event_id,
        "session_id": session_of(op), "person_key": hash_email(op.email),
        "lead_id": lead_id_of(d, known_lead_id), "request_id": d.request_id,
    }


def to_outcome(d: Decision, decided_at: datetime, known_lead_id: int | None = None) -> RecordOutcome:
    return RecordOutcome(**outcome_values(d, decided_at, known_lead_id))


#: The outcome's fast path (kmsync_contracts.trusted): the operation's identity fields were validated when
#: it was read (against OperationBase's constraints and one of the operation kinds: taken as given while
#: the outcome's are the same, or the same or None);
#: every other value is checked against RecordOutcome's constraints as its metadata declares them.
_OUTCOME = FastPath(RecordOutcome, {
    **copied_from(OperationBase, "op_id", "munchkin_id", "source_time", "partner_id", "virtual_event_id"),
    "kind": OperationKind})


def outcome_json(d: Decision, decided_at: datetime, known_lead_id: int | None = None) -> bytes:
    """``encode(to_outcome(...))``, byte for byte, without a model per record (issue #22: validating and
    serializing an outcome takes 9.6 µs, checking its fields and writing them with orjson 3.7 µs, of which
    orjson 1.1 µs and the checks 1.8 µs; in-process, session 10, load 5). Whatever validation could still
    change or refuse (a padded string, which the contract strips; a ReasonCode, a str subclass; a lead
    id that is not positive; a person key off its pattern) and whatever orjson refuses go through
    ``RecordOutcome`` as before (kmsync_contracts.trusted.FastPath.encode_values;
    tests/marketo_sink/test_hot_path.py compares the bytes)."""
    return _OUTCOME.encode_values(outcome_values(d, decided_at, known_lead_id))


def outcome_jsons(decisions: Sequence[Decision], decided_at: datetime,
                  known_lead_id: Callable[[str, str], int | None]) -> list[bytes]:
    """``outcome_json`` of each decision of one publication, in one pass: ``outcome_values`` inlined (no call
    per field group), the session by the operation's kind, and the sink's known lead id asked for only where the
    outcome carries it (not for a lead upsert that returned its id). The same bytes, the same fast path
    (tests/marketo_sink/test_batch_paths.py compares them with ``encode(to_outcome(...))``; issue #22)."""
    out: list[bytes] = []
    encode_values = _OUTCOME.encode_values
    for d in decisions:
        p = d.pending
        op = p.op
        kind = op.kind
        failed = d.status == "failed"
        if kind == "lead_upsert" and not failed and d.marketo_id and d.marketo_id.isdigit():
            lead_id: int | None = int(d.marketo_id)
        else:
            lead_id = known_lead_id(op.munchkin_id, op.email)
        if kind == "custom_object_upsert":
            entry = op.record.get(PRIMARY_FIELD)  # type: ignore[union-attr]
            session = str(entry) if entry not in (None, "") else None
        else:
            session = op.primary_attribute_value if kind == "custom_activity" else None  # type: ignore[union-attr]
        out.append(encode_values({
            "schema_version": 1, "op_id": op.op_id, "munchkin_id": op.munchkin_id, "kind": kind,
            "status": d.status, "marketo_id": d.marketo_id, "reason_code": d.reason_code, "reason": d.reason,
            "api": d.api, "attempts": p.attempts if p.attempts > 1 else 1, "source_time": op.source_time,
            "decided_at": decided_at, "partner_id": op.partner_id, "virtual_event_id": op.virtual_event_id,
            "session_id": session, "person_key": hash_email(op.email), "lead_id": lead_id,
            "request_id": d.request_id,
        }))
    return out


def to_dead_letter(d: Decision, failed_at: datetime) -> DeadLetter:
    src = d.pending.source
    return DeadLetter(
        stage="sink",
        reason_code=d.reason_code or ReasonCode.UNKNOWN,
        reason=_explain(d),
        source_topic=src.topic,
        source_partition=src.partition,
        source_offset=src.offset,
        source_key=d.pending.key,
        payload=d.pending.op.model_dump(mode="json"),
        attempts=max(1, d.pending.attempts),
        failed_at=failed_at,
    )


def _explain(d: Decision) -> str:
    why = d.reason or "no reason given"
    if d.retryable:
        return f"{why} (still failing after {d.pending.attempts} attempts; replay once Marketo recovers)"
    return f"{why} (fix the data or the Marketo setup, then replay with `kmsync dlq replay`)"
