"""The error table covers every code in docs/reference/marketo-api.md §3 and classifies the ones that drive retries."""

from __future__ import annotations

import httpx
import pytest

from kmsync_marketo.errors import (
    ERROR_TABLE,
    ErrorClass,
    MarketoApiError,
    MarketoAuthError,
    MarketoError,
    MarketoHttpError,
    MarketoProtocolError,
    classify,
    classify_http_status,
    failure_of,
    no_answer,
)
from kmsync_marketo.outcomes import align_results, request_id_of

# The codes listed in docs/reference/marketo-api.md §3.2 (response level) and §3.3 (record
# level), copied here so the test runs wherever the repository is cloned.
REFERENCE_RESPONSE_CODES = (
    "500 502 600 601 602 603 604 605 606 607 608 609 610 611 612 613 614 615 616 "
    "701 702 703 704 709 710 711 712 713 714 718 719"
).split()
REFERENCE_RECORD_CODES = (
    "1001 1002 1003 1004 1005 1006 1007 1008 1009 1010 1011 1012 1013 1014 1015 1016 1017 1018 1019 "
    "1020 1021 1022 1025 1026 1027 1028 1029 1035 1036 1037 1042 1048 1049 1076 1077 1078 1079 1080"
).split()


def test_every_code_of_the_reference_is_in_the_table() -> None:
    missing = set(REFERENCE_RESPONSE_CODES + REFERENCE_RECORD_CODES) - ERROR_TABLE.keys()
    assert not missing, f"codes in docs/reference/marketo-api.md §3 without a row: {sorted(missing)}"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("601", ErrorClass.REAUTH),
        ("602", ErrorClass.REAUTH),
        ("606", ErrorClass.RETRY_SOON),
        ("615", ErrorClass.RETRY_SOON),
        ("604", ErrorClass.RETRY_SOON),
        ("502", ErrorClass.RETRY_SOON),
        ("713", ErrorClass.RETRY_SOON),
        ("607", ErrorClass.RETRY_LATER),
        ("1016", ErrorClass.RETRY_LATER),
        ("1029", ErrorClass.RETRY_LATER),
        ("603", ErrorClass.PERMANENT),
        ("610", ErrorClass.PERMANENT),
        ("1004", ErrorClass.PERMANENT),
        ("1025", ErrorClass.PERMANENT),
        ("1037", ErrorClass.NOT_AN_ERROR),
    ],
)
def test_classification_of_codes_that_drive_behaviour(code: str, expected: ErrorClass) -> None:
    assert classify(code).error_class is expected
    assert classify(int(code)).error_class is expected  # Marketo sends strings; ints also work


def test_not_counted_codes_are_exactly_the_starred_ones() -> None:
    starred = {c for c, info in ERROR_TABLE.items() if info.not_counted}
    assert starred == {"601", "602", "604", "605", "608", "611"}


def test_unknown_code_is_permanent_never_retried_blindly() -> None:
    assert classify("9999").error_class is ErrorClass.PERMANENT
    assert classify(None).error_class is ErrorClass.PERMANENT


def test_http_statuses() -> None:
    assert classify_http_status(200) is None
    assert classify_http_status(413) is ErrorClass.PERMANENT
    assert classify_http_status(414) is ErrorClass.PERMANENT
    assert classify_http_status(503) is ErrorClass.RETRY_SOON


def test_results_are_aligned_by_seq_and_both_reason_keys_are_read() -> None:
    results = [
        {"seq": 2, "status": "skipped", "errors": [{"code": "1004", "message": "Lead not found"}]},
        {"seq": 0, "status": "added", "marketoGUID": "g-1"},
        {"seq": 1, "status": "skipped", "reasons": [{"code": "1037", "message": "already in status"}]},
    ]
    out = align_results(results, count=4, offset=300, id_key="marketoGUID")
    assert [o.seq for o in out] == [300, 301, 302, 303]
    assert (out[0].status, out[0].marketo_id) == ("created", "g-1")
    assert (out[1].status, out[1].reason_code, out[1].classification) == ("skipped", "1037", None)
    assert (out[2].status, out[2].reason_code, out[2].classification) == ("failed", "1004", ErrorClass.PERMANENT)
    # No item for input 3: failed and retryable, never silently dropped.
    assert out[3].status == "failed" and out[3].retryable


def test_every_outcome_of_a_call_carries_its_request_id_missing_ones_too() -> None:
    results = [{"seq": 0, "status": "added", "marketoGUID": "g-1"},
               {"seq": 1, "status": "skipped", "errors": [{"code": "1004"}]}, {"seq": 2, "status": "odd"}]
    out = align_results(results, count=4, offset=0, id_key="marketoGUID", request_id="e42b#1a2")
    assert [o.request_id for o in out] == ["e42b#1a2"] * 4
    assert [o.status for o in out] == ["created", "failed", "failed", "failed"]
    assert request_id_of({"requestId": "e42b#1a2"}) == "e42b#1a2"
    assert request_id_of({"requestId": ""}) is None and request_id_of({}) is None


def test_leads_without_seq_are_aligned_by_position() -> None:
    results = [{"id": 50, "status": "created"}, {"status": "skipped", "reasons": [{"code": "1005"}]}]
    out = align_results(results, count=2, offset=0, id_key="id")
    assert (out[0].marketo_id, out[1].status, out[1].reason_code) == ("50", "failed", "1005")


def test_failure_of_is_the_one_mapping_from_an_error_to_what_its_records_get() -> None:
    def as_tuple(exc: MarketoError) -> tuple[str, ErrorClass, bool]:
        f = failure_of(exc)
        return f.code, f.error_class, f.maybe_applied

    assert as_tuple(MarketoHttpError(503, "x")) == ("http_503", ErrorClass.RETRY_SOON, True)
    assert as_tuple(MarketoHttpError(0, "x")) == ("http_0", ErrorClass.RETRY_SOON, True)
    assert as_tuple(MarketoHttpError(413, "x")) == ("http_413", ErrorClass.PERMANENT, False)
    assert as_tuple(MarketoApiError("604", "timeout")) == ("604", ErrorClass.RETRY_SOON, True)
    assert as_tuple(MarketoApiError("606", "rate")) == ("606", ErrorClass.RETRY_SOON, False)
    assert as_tuple(MarketoApiError("1003", "bad")) == ("1003", ErrorClass.PERMANENT, False)
    assert as_tuple(MarketoProtocolError("not JSON")) == ("kmsync.protocol", ErrorClass.RETRY_SOON, True)
    assert as_tuple(MarketoAuthError("refused")) == ("kmsync.auth_refused", ErrorClass.RETRY_SOON, False)


def test_no_answer_flags_a_request_that_may_have_reached_marketo_only_when_it_must_not_be_replayed() -> None:
    read = httpx.ReadTimeout("slow")
    refused = httpx.ConnectError("refused")
    assert no_answer(read, "POST /x", idempotent=False).maybe_applied
    assert not no_answer(read, "POST /x").maybe_applied
    assert not no_answer(refused, "POST /x", idempotent=False).maybe_applied, "never sent: certain"
    assert no_answer(refused, "POST /x").status == 0
