"""The ingest HTTP boundary fuzzed as an attacker would (hypothesis, seeded): malformed and forged
notifications, replays, truncated and oversized bodies, wrong content types and tokens, odd
encodings and BOMs, CSVs with wrong columns, formula injection, huge cells, path-like file names,
mixed with valid uploads. Every answer is 2xx or 4xx with field-level problems; nothing logs an
ERROR or a traceback; every valid row sent in between is in its topic exactly once.

`make test` runs KMSYNC_FUZZ_EXAMPLES (default 3000) requests; a larger run is documented in
services/kmsync_ingest/README.md (e.g. KMSYNC_FUZZ_EXAMPLES=50000).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from kaltura_sandbox.testing import running_sandbox
from kmsync_contracts.topics import POLL_RESPONSES
from kmsync_kaltura import compute_signature
from kmsync_testing.ingest import TEST_UPLOAD_TOKEN, running_ingest, settings_for, tenants_for, upload_headers
from kmsync_testing.kafka_broker import KafkaBroker
from kmsync_testing.topics import read_topic

EXAMPLES = int(os.environ.get("KMSYNC_FUZZ_EXAMPLES", "3000"))
MAX_UPLOAD = 262_144
POLLS_HEADER = "entry_id,poll_id,poll_type,question,user_id,email,answer,answered_at"
PROBLEM = re.compile(r"^\(?[A-Za-z_][\w.\-\[\]()]*\)?: \S")


@dataclass
class Target:
    base: str
    partner_id: int
    entry_id: str
    secret: str
    http: httpx.Client
    #: The event loop of the sandbox and ingest (their thread).
    loop: asyncio.AbstractEventLoop
    sent_valid: set[str] = field(default_factory=set)
    accepted_notes: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    serial: int = 0


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("aiokafka", "kafka")):
            return  # the broker client's own chatter (leader moves) is not the boundary's
        self.lines.append(f"{record.name}: {record.getMessage()} {'(traceback)' if record.exc_info else ''}")


@pytest.fixture
def target(kafka_broker: KafkaBroker, topic_prefix: str, tmp_path: Path) -> Iterator[Target]:
    """Sandbox + ingest on their own event loop in a thread, so hypothesis can drive plain HTTP."""
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started, stop = threading.Event(), asyncio.Event()

    async def serve() -> None:
        scenario = {"registrants": 10, "sessions": 1, "late_row_rate": 0.0}
        async with running_sandbox(scenario, seed=41) as sb:
            s = settings_for(kafka_broker.bootstrap, topic_prefix, sb, max_upload_bytes=MAX_UPLOAD,
                             max_notification_bytes=65_536, max_csv_line_bytes=4096, max_concurrent_uploads=4)
            async with running_ingest(s, tenants_for(sb, tmp_path), sb) as ingest:
                ready.update(base=ingest.base_url, partner=sb.partner_id, entry=sb.session_entry_ids[0],
                             secret=sb.admin_secret)
                started.set()
                await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        finally:
            started.set()

    thread = threading.Thread(target=run, name="fuzz-ingest", daemon=True)
    thread.start()
    assert started.wait(60) and ready, "ingest did not start"
    with httpx.Client(timeout=60) as http:
        yield Target(ready["base"], ready["partner"], ready["entry"], ready["secret"], http, loop)
    loop.call_soon_threadsafe(stop.set)
    thread.join(60)


@contextmanager
def loop_held(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """The loop's thread kept in one callback for the block. Hypothesis fails a draw during which the global
    ``random`` changed (HypothesisDeprecationWarning: it takes that for a strategy using ``random``); the strategies
    here use none, but ingest's Kafka clients (aiokafka's node choice, its fetcher's shuffle), aiohttp's connector
    and the sandbox do, on that thread, at any time. Held, nothing there draws from it while a request is drawn."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait()

    loop.call_soon_threadsafe(hold)
    try:
        assert holding.wait(60), "the ingest loop did not get to the hold"
        yield
    finally:
        release.set()


# ------------------------------------------------------------------------------------- strategies
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
junk = st.binary(max_size=400)
content_types = st.sampled_from(["application/json", "application/xml", "application/x-www-form-urlencoded",
                                 "image/png", "text/html", "application/octet-stream", "multipart/mixed",
                                 "text/csv; charset=utf-16", "", "csv", "text/"])
formulas = st.sampled_from(["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)", "=HYPERLINK(\"http://x\")",
                            "\t=1", "=1,=2"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=20)


def row(t: Target, poll: str, user: str, email: str | None = None, answer: str = "Yes") -> str:
    return f"{t.entry_id},{poll},crowd vote,Q?,{user},{email or user + '@acme.com'},{answer},2025-06-16T14:00:00.000Z"


def valid_csv(t: Target, rows: int, tag: str = "fx") -> tuple[bytes, set[str]]:
    """A good poll answers CSV; only the valid kinds use the tag "fz" whose rows are counted."""
    t.serial += 1
    keys = {f"{tag}{t.serial}:u{i}" for i in range(rows)}
    lines = [row(t, f"{tag}{t.serial}", f"u{i}") for i in range(rows)]
    return ("\ufeff" + "\n".join([POLLS_HEADER, *lines]) + "\n").encode(), keys


def sign(t: Target, body: bytes, ctype: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    return {"Content-Type": ctype, "X-KALTURA-SIGNATURE": compute_signature(t.secret, body)}


UPLOAD = "/ingest/kaltura/reports"
NOTIFICATION = "/ingest/kaltura/notification"
#: The upload kinds about what the CSV body holds (the others are about how it is sent).
BODY_KINDS = {"truncated_csv", "random_bytes", "wrong_columns", "formula_injection", "oversized_cell", "encoding",
              "boms", "nul_and_line_endings"}
NOTIFICATION_KINDS = {"signed_ignored", "replay", "forged_signature", "odd_hash_algo", "deep_json", "malformed_json",
                      "random_json", "unsigned_or_odd_notification", "oversized_notification"}


@st.composite
def requests(draw: st.DrawFn, t: Target) -> tuple[str, str, dict[str, Any]]:
    """(kind, path, httpx request arguments) for one of 30 kinds."""
    kind = draw(st.sampled_from(KINDS))
    if kind in NOTIFICATION_KINDS:
        return notification_request(draw, t, kind)
    if kind in BODY_KINDS:
        return upload_body_request(draw, t, kind)
    return upload_request(draw, t, kind)


def upload_request(draw: st.DrawFn, t: Target, kind: str) -> tuple[str, str, dict[str, Any]]:
    """An upload that is odd in how it is sent: token, content type, multipart, parameters, size."""
    up = UPLOAD
    if kind == "valid_upload":
        body, keys = valid_csv(t, draw(st.integers(1, 20)), "fz")
        t.sent_valid |= keys
        return kind, up, {"content": body, "headers": upload_headers()}
    if kind == "valid_multipart":
        body, keys = valid_csv(t, draw(st.integers(1, 5)), "fz")
        t.sent_valid |= keys
        return kind, up, {"files": {"file": ("polls.csv", body, "text/csv")}, "headers": upload_headers(None)}
    if kind == "no_token":
        return kind, up, {"content": valid_csv(t, 1)[0], "headers": {"Content-Type": "text/csv"}}
    if kind == "wrong_token":
        token = draw(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64))
        if token == TEST_UPLOAD_TOKEN:
            token += "x"
        return kind, up, {"content": valid_csv(t, 1)[0], "headers": upload_headers(token=token)}
    if kind == "odd_authorization":
        value = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
        return kind, up, {"content": b"x", "headers": {"Content-Type": "text/csv", "Authorization": value}}
    if kind == "wrong_content_type":
        return kind, up, {"content": valid_csv(t, 1)[0], "headers": upload_headers(draw(content_types))}
    if kind == "missing_content_type":
        return kind, up, {"content": valid_csv(t, 1)[0], "headers": upload_headers(None)}
    if kind == "path_filename":
        name = draw(st.sampled_from(["../../etc/passwd", "..\\..\\boot.ini", "/abs/Report_4021_1_x.csv", "..",
                                     "a/b/c/", "\x00.csv"]) | text)
        body = valid_csv(t, 1)[0]
        return kind, up, {"files": {"file": (name or "x", body, "text/csv")}, "headers": upload_headers(None)}
    if kind == "multipart_no_file":
        return kind, up, {"data": {"a": "b"}, "files": {}, "headers": upload_headers("multipart/form-data; boundary=zz")}
    if kind == "malformed_multipart":
        boundary = draw(st.sampled_from(["", "zz", "\"", "a" * 100]))
        return kind, up, {"content": draw(junk), "headers": upload_headers(f"multipart/form-data; boundary={boundary}")}
    if kind == "bad_params":
        params = draw(st.dictionaries(st.sampled_from(["partner_id", "virtual_event_id", "entry_id", "report_id",
                                                       "exported_at", "final", "filename", "other"]), text,
                                      min_size=1, max_size=4))
        return kind, up, {"params": params, "content": valid_csv(t, 1)[0], "headers": upload_headers()}
    if kind == "empty_body":
        return kind, up, {"content": b"", "headers": upload_headers()}
    assert kind == "huge_body"
    return kind, up, {"content": b"a,b\n" * (MAX_UPLOAD // 4 + draw(st.integers(1, 1000))),
                      "headers": upload_headers()}


def upload_body_request(draw: st.DrawFn, t: Target, kind: str) -> tuple[str, str, dict[str, Any]]:
    """An upload whose CSV body is odd: cut, junk, wrong columns, formulas, encodings, line ends."""
    up = UPLOAD
    if kind == "truncated_csv":
        cut = draw(st.integers(0, 10**6))  # not bounded by the body's length: draws never depend on state
        body = valid_csv(t, 5)[0]
        return kind, up, {"content": body[: cut % len(body)], "headers": upload_headers()}
    if kind == "random_bytes":
        return kind, up, {"content": draw(junk), "headers": upload_headers()}
    if kind == "wrong_columns":
        cols = draw(st.lists(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), min_size=1, max_size=10))
        body = ",".join(cols) + "\n" + ",".join("x" for _ in cols) + "\n"
        return kind, up, {"content": body.encode(), "headers": upload_headers()}
    if kind == "formula_injection":
        f = draw(formulas)
        body = "\n".join([POLLS_HEADER, row(t, "fzf", "uf", answer=f), row(t, "fzf", "ug", email=f)]) + "\n"
        return kind, up, {"content": body.encode(), "headers": upload_headers()}
    if kind == "oversized_cell":
        size = draw(st.integers(1000, 200_000))
        quoted = draw(st.booleans())
        cell = ('"' + "x" * size + '"') if quoted else "x" * size
        body = "\n".join([POLLS_HEADER, row(t, "fzo", "uo", answer=cell)]) + "\n"
        return kind, up, {"content": body.encode(), "headers": upload_headers()}
    if kind == "encoding":
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "latin-1", "utf-32", "cp1252"]))
        body = (POLLS_HEADER + "\n" + row(t, "fze", "ü") + "\n").encode(codec, errors="replace")
        return kind, up, {"content": body, "headers": upload_headers()}
    if kind == "boms":
        prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00"]))
        return kind, up, {"content": prefix + (POLLS_HEADER + "\n").encode(), "headers": upload_headers()}
    assert kind == "nul_and_line_endings"
    sep = draw(st.sampled_from(["\r\n", "\r", "\n\n", "\x00\n"]))
    body = sep.join([POLLS_HEADER, row(t, "fzn", "un"), row(t, "fzn", "um\x00")]) + sep
    return kind, up, {"content": body.encode(), "headers": upload_headers()}


def notification_request(draw: st.DrawFn, t: Target, kind: str) -> tuple[str, str, dict[str, Any]]:
    """A Kaltura notification: signed, replayed, forged, odd JSON, oversized."""
    note = NOTIFICATION
    if kind == "signed_ignored":
        t.serial += 1
        body = f"eventNotificationJobId=fz{t.serial}&x={draw(st.integers())}".encode()
        headers = sign(t, body)
        t.accepted_notes.append((body, headers))
        return kind, note, {"content": body, "headers": headers}
    if kind == "replay":
        pick = draw(st.integers(0, 10**6))
        if not t.accepted_notes:
            return kind, note, {"content": b"", "headers": {}}
        body, headers = t.accepted_notes[pick % len(t.accepted_notes)]
        return kind, note, {"content": body, "headers": headers}
    if kind == "forged_signature":
        body = f"eventNotificationJobId=forged&partner_id={t.partner_id}&user_id=u1".encode()
        sig = draw(st.from_regex(r"[0-9a-f]{40}", fullmatch=True) | text).encode()
        return kind, note, {"content": body, "headers": {"Content-Type": "application/x-www-form-urlencoded",
                                                          "X-KALTURA-SIGNATURE": sig}}
    if kind == "odd_hash_algo":
        body = b"eventNotificationJobId=algo"
        headers = {**sign(t, body), "X-KALTURA-HASH-ALGO": draw(text).encode()}
        return kind, note, {"content": body, "headers": headers}
    if kind == "deep_json":
        depth = draw(st.integers(30, 5000))
        body = ('{"object":' * depth + "{}" + "}" * depth).encode()
        return kind, note, {"content": body, "headers": sign(t, body, "application/json")}
    if kind == "malformed_json":
        body = draw(junk)
        return kind, note, {"content": body, "headers": sign(t, body, "application/json")}
    if kind == "random_json":
        value = draw(json_values)
        if draw(st.booleans()):
            value = {"object": value, "eventNotificationJobId": draw(json_values), "eventObjectType": draw(json_values)}
        body = json.dumps(value).encode()
        return kind, f"{note}/{t.partner_id}", {"content": body, "headers": sign(t, body, "application/json")}
    if kind == "unsigned_or_odd_notification":
        body = draw(junk)
        ctype = draw(content_types)
        partner = draw(st.sampled_from(["", f"/{t.partner_id}", "/abc", "/-1", "/99999999999999999999", "/0"]))
        return kind, note + partner, {"content": body, "headers": {"Content-Type": ctype}}
    assert kind == "oversized_notification"
    body = b"data=" + b"x" * 70_000
    return kind, note, {"content": body, "headers": sign(t, body)}


KINDS = [
    "valid_upload", "valid_multipart", "no_token", "wrong_token", "odd_authorization", "wrong_content_type",
    "missing_content_type", "truncated_csv", "random_bytes", "wrong_columns", "formula_injection",
    "oversized_cell", "encoding", "boms", "path_filename", "multipart_no_file", "malformed_multipart",
    "bad_params", "empty_body", "huge_body", "nul_and_line_endings", "signed_ignored", "replay",
    "forged_signature", "odd_hash_algo", "deep_json", "malformed_json", "random_json",
    "unsigned_or_odd_notification", "oversized_notification",
]


@pytest.mark.filterwarnings("error::hypothesis.errors.HypothesisDeprecationWarning")
async def test_no_input_gets_a_5xx_and_valid_rows_land_exactly_once(
    target: Target, kafka_broker: KafkaBroker, topic_prefix: str
) -> None:
    errors = Errors()
    logging.getLogger().addHandler(errors)
    bad: list[str] = []
    try:
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def one_request(data: st.DataObject) -> None:
            with loop_held(target.loop):
                kind, path, kwargs = data.draw(requests(target))
            target.kinds[kind] += 1
            try:
                answer = target.http.post(f"{target.base}{path}", **kwargs)
            except httpx.LocalProtocolError:
                return  # the client itself will not send it (a header h11 refuses): nothing reached ingest
            except httpx.HTTPError as exc:  # a dropped connection is a crash from the caller's side
                bad.append(f"{kind}: {type(exc).__name__}: {exc}")
                return
            if answer.status_code >= 500 or answer.status_code < 200 or 300 <= answer.status_code < 400:
                bad.append(f"{kind}: HTTP {answer.status_code} {answer.text[:200]}")
                return
            if answer.status_code == 400 and not answer.headers.get("Content-Type", "").startswith("application/json"):
                # aiohttp's HTTP parser refused the request itself (e.g. control bytes in a header)
                if "Bad Request" not in answer.text and "Invalid" not in answer.text:
                    bad.append(f"{kind}: 400 from the HTTP parser without a reason: {answer.text[:200]}")
                return
            if answer.status_code >= 400:
                try:
                    problems = answer.json().get("problems")
                except ValueError:
                    problems = None
                if not problems or not all(isinstance(p, str) and PROBLEM.match(p) for p in problems):
                    bad.append(f"{kind}: {answer.status_code} without field-level problems: {answer.text[:200]}")
            if kind.startswith("valid_") and answer.status_code != 200:
                bad.append(f"{kind}: a valid upload was refused: {answer.status_code} {answer.text[:200]}")

        await asyncio.to_thread(one_request)
    finally:
        logging.getLogger().removeHandler(errors)
    assert not bad, f"{len(bad)} bad answers, e.g.:\n" + "\n".join(bad[:10])
    assert not errors.lines, "ERROR log lines:\n" + "\n".join(errors.lines[:10])
    assert len(target.kinds) == len(KINDS), set(KINDS) - set(target.kinds)

    records = [v for _, v in await read_topic(kafka_broker.bootstrap, POLL_RESPONSES, topic_prefix)]
    landed = Counter(f"{r.poll_id}:{r.user_id}" for r in records if r.poll_id.startswith("fz") and r.poll_id[2:].isdigit())
    assert target.sent_valid and set(landed) == target.sent_valid
    assert max(landed.values()) == 1  # exactly once
