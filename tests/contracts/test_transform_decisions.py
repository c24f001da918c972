"""transform.decisions.v1: the TransformDecision contract (docs/design/granular-statuses.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kmsync_contracts import ContractError, decode, encode
from kmsync_contracts.outcomes import DECISION_DETAIL_KEYS, TransformDecision
from kmsync_contracts.reasons import ReasonCode
from kmsync_contracts.topics import ALL_TOPICS, TRANSFORM_DECISIONS

T = datetime(2026, 6, 16, 14, 0, tzinfo=UTC)
BASE: dict[str, Any] = {"reason": "why", "partner_id": 1234567, "virtual_event_id": 98765, "user_id": "u-1",
                        "person_key": "email#0123456789abcdef", "source_time": T, "decided_at": T}
#: One record of each decision with its documented detail keys.
EXAMPLES: dict[str, tuple[ReasonCode, dict[str, Any]]] = {
    "forward_only_skip": (ReasonCode.FORWARD_ONLY_SKIP, {"from_status": "Un-registered", "to_status": "Registered"}),
    "truncated": (ReasonCode.TRUNCATED, {"field": "poll_3_answer", "original_length": 1600, "kept_length": 1500}),
    "too_many_polls": (ReasonCode.TOO_MANY_POLLS, {"poll_id": "p11", "position": 11}),
    "unusable_email": (ReasonCode.UNUSABLE_EMAIL, {"email_problem": "missing"}),
    "label_undecided": (ReasonCode.EVENT_NOT_CONFIGURED, {}),
    "poll_moved": (ReasonCode.POLL_MOVED, {"poll_id": "p2", "from_position": 3, "to_position": 2}),
    "activity_once": (ReasonCode.ACTIVITY_ONCE, {"activity_op_id": "op-7"}),
}


def test_the_topic_is_in_the_catalogue_keyed_by_person_in_event() -> None:
    assert TRANSFORM_DECISIONS in ALL_TOPICS
    assert TRANSFORM_DECISIONS.name == "transform.decisions.v1"
    assert (TRANSFORM_DECISIONS.partitions, TRANSFORM_DECISIONS.cleanup_policy) == (6, "delete")
    record = TransformDecision(decision="unusable_email", reason_code=ReasonCode.UNUSABLE_EMAIL,
                               detail={"email_problem": "missing"}, **BASE)
    assert record.partition_key() == "1234567:98765:u-1"  # the input topics' key: same partition order


def test_every_decision_has_an_example() -> None:
    assert set(EXAMPLES) == set(DECISION_DETAIL_KEYS)


@pytest.mark.parametrize("decision", sorted(EXAMPLES))
def test_each_decision_round_trips_with_its_documented_keys(decision: str) -> None:
    code, detail = EXAMPLES[decision]
    record = TransformDecision(decision=decision, reason_code=code, detail=detail, session_id="1_abc",
                               op_id="op-1", **BASE)
    decoded = decode(TRANSFORM_DECISIONS, encode(record))
    assert decoded == record
    assert decoded.reason_code.value.startswith("kmsync.")


@pytest.mark.parametrize("decision", sorted(d for d, (_, detail) in EXAMPLES.items() if detail))
def test_a_decision_without_its_detail_keys_is_refused(decision: str) -> None:
    code, detail = EXAMPLES[decision]
    data = encode(TransformDecision(decision=decision, reason_code=code, detail=detail, **BASE))
    first = next(iter(detail))
    with pytest.raises(ContractError, match=f"detail: a {decision} decision needs"):
        decode(TRANSFORM_DECISIONS, data.replace(f'"{first}"'.encode(), b'"other"'))


def test_a_label_skip_carries_labels_instead_of_statuses() -> None:
    TransformDecision(decision="forward_only_skip", reason_code=ReasonCode.FORWARD_ONLY_SKIP,
                      detail={"from_label": "During-event visit", "to_label": "Pre-event visit"}, **BASE)


def test_the_person_key_is_a_hash_never_an_email_and_codes_are_kmsyncs() -> None:
    good = encode(TransformDecision(decision="unusable_email", reason_code=ReasonCode.UNUSABLE_EMAIL,
                                    detail={"email_problem": "missing"}, **BASE))
    with pytest.raises(ContractError, match="person_key"):
        decode(TRANSFORM_DECISIONS, good.replace(b"email#0123456789abcdef", b"jane@example.com"))
    decode(TRANSFORM_DECISIONS, good.replace(b"email#0123456789abcdef", b"email#none"))
    with pytest.raises(ContractError, match="reason_code"):
        decode(TRANSFORM_DECISIONS, good.replace(b"kmsync.unusable_email", b"1003"))
