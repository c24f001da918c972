"""`kmsync bench codecs` (or `python -m kmsync_bench.codecs`): CPU per record of encoding and decoding
the records kmsync's services send each other, for each JSON path (issue #22: "a faster JSON path
between kmsync's own services where it measures better (orjson or msgspec): measure, then choose").

The records are the real contracts (kmsync_contracts), built the way the services build them:
engagement snapshots as ingest makes them from a report 4021 row, the operations transform emits
for an attendee (kmsync_bench.workload), the outcomes the sink writes. Every decode path validates
against the topic's contract (a trust boundary: whatever is read from a topic is validated); the
parse-only figures say how much of a decode is the JSON parser and how much is validation.

Paths (encode | decode):
- ``pydantic-str``: ``model_dump_json().encode()`` | ``TypeAdapter.validate_json`` (kmsync_contracts.codecs
  until this measurement; its bytes are the wire format every path is compared with);
- ``pydantic-bytes``: the model's own serializer straight to bytes (``__pydantic_serializer__.to_json``) |
  ``validate_json`` (kmsync_contracts.codecs since);
- ``orjson``: ``orjson.dumps(model_dump())`` (UTC as ``Z``, like pydantic) | ``validate_python(orjson.loads())``;
- ``msgspec``: ``msgspec.json.encode(model_dump())`` | ``validate_python(msgspec.json.decode())`` (when
  msgspec is importable: it is not a kmsync dependency).
CPU is ``time.process_time`` of this process over the whole list of records, repeated; the median
repeat is reported. Nothing else runs in the process (no broker): this is the codec alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter

from kmsync_bench.config import EFFICIENCY_INSTANCE
from kmsync_bench.workload import ENTRY_ID, PARTNER_ID, attendee_ops
from kmsync_contracts.codecs import decode_as, decode_model
from kmsync_contracts.kaltura_records import AttendanceStatus, AttendeeStatus, SessionEngagement
from kmsync_contracts.outcomes import RecordOutcome
from kmsync_contracts.topics import ATTENDEE_STATUS, MARKETO_OPS, MARKETO_RESULTS, SESSION_ENGAGEMENT

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
Encoder = Callable[[BaseModel], bytes]
Decoder = Callable[[TypeAdapter[Any], bytes], object]


def engagement(i: int) -> SessionEngagement:
    """A final engagement snapshot as ingest builds it from a report 4021 row (its 14 metrics set)."""
    return SessionEngagement(
        partner_id=PARTNER_ID, virtual_event_id=98765, user_id=f"attendee{i}@acme-corp.example",
        email=f"Attendee{i}@Acme-Corp.example", source="file",
        source_ref=f"Report_4021_{PARTNER_ID}_{ENTRY_ID}.csv line {i + 2}", source_time=T0,
        ingested_at=T0 + timedelta(seconds=3, microseconds=i), entry_id=ENTRY_ID, is_final=True,
        combined_live_engaged_users_play_time_ratio=(i % 100) / 100, add_to_calendar=i % 3, raise_hand=i % 4,
        mic_on=float(i % 30), cam_on=float(i % 20), clap_clicked_count=i % 5, heart_clicked_count=i % 6,
        think_clicked_count=i % 7, wow_clicked_count=i % 8, smile_clicked_count=i % 9,
        total_reactions_activity=i % 35, answered_polls=i % 4, messages_sent_group=i % 11, qna_threads=i % 3)


def status(i: int) -> AttendeeStatus:
    """A registration status from Kaltura's User Profile, with registrant data and the event's schedule."""
    return AttendeeStatus(
        partner_id=PARTNER_ID, virtual_event_id=98765, user_id=f"attendee{i}@acme-corp.example",
        email=f"attendee{i}@acme-corp.example", source="pull", source_ref=f"userProfile.list page {i // 500 + 1}",
        source_time=T0, ingested_at=T0 + timedelta(seconds=1), app_guid="6512a3c8f1", first_name=f"Jane{i}",
        last_name="Doe-Müller", status=AttendanceStatus.CONFIRMED, previous_status=AttendanceStatus.REGISTERED,
        reg_origin="registration", last_login_type="magicLink", status_time=T0,
        event_start=T0 + timedelta(days=1), event_end=T0 + timedelta(days=1, hours=3), schedule_source="events_api",
        title="Director of Marketing", company="Acme Corp", country="DE",
        registration={"industry": "Software", "employees": "1000-4999", "opt_in": True, "sessions": "Keynote; Q&A"})


def outcome(i: int) -> RecordOutcome:
    """An outcome the sink writes to marketo.results.v1, with its correlation keys."""
    return RecordOutcome(
        op_id=f"op-{i:08x}-co", munchkin_id=EFFICIENCY_INSTANCE, kind="custom_object_upsert",
        status="updated" if i % 3 else "created", marketo_id=f"{i:08x}-5a1b-4c2d-9e3f-00112233aabb",
        source_time=T0, decided_at=T0 + timedelta(seconds=4, microseconds=i), partner_id=PARTNER_ID,
        virtual_event_id=98765, session_id=ENTRY_ID, person_key=f"email#{i:016x}", lead_id=1000 + i,
        request_id=f"e42b#{i:x}")


def samples(n: int) -> dict[str, tuple[TypeAdapter[Any], list[BaseModel]]]:
    """``n`` records per topic; the operations are an attendee's mix (lead, statuses, object, activity)."""
    ops: list[BaseModel] = []
    i = 0
    while len(ops) < n:
        ops.extend(attendee_ops(i, EFFICIENCY_INSTANCE, "codec", T0))
        i += 1
    return {
        SESSION_ENGAGEMENT.name: (SESSION_ENGAGEMENT.value, [engagement(i) for i in range(n)]),
        ATTENDEE_STATUS.name: (ATTENDEE_STATUS.value, [status(i) for i in range(n)]),
        MARKETO_OPS.name: (MARKETO_OPS.value, ops[:n]),
        MARKETO_RESULTS.name: (MARKETO_RESULTS.value, [outcome(i) for i in range(n)]),
    }


def wire_bytes(record: BaseModel) -> bytes:
    """The wire format as kmsync wrote it before this measurement: what every path must reproduce."""
    return record.model_dump_json().encode()


def _pydantic_bytes(record: BaseModel) -> bytes:
    return record.__pydantic_serializer__.to_json(record)


def _orjson_encode(record: BaseModel) -> bytes:
    return orjson.dumps(record.model_dump(), option=orjson.OPT_UTC_Z)


def paths() -> dict[str, tuple[Encoder, Decoder]]:
    out: dict[str, tuple[Encoder, Decoder]] = {
        "pydantic-str": (wire_bytes, lambda a, d: a.validate_json(d)),
        "pydantic-bytes": (_pydantic_bytes, lambda a, d: a.validate_json(d)),
        "orjson": (_orjson_encode, lambda a, d: a.validate_python(orjson.loads(d))),
    }
    if importlib.util.find_spec("msgspec") is not None:
        import msgspec

        out["msgspec"] = (lambda r: msgspec.json.encode(r.model_dump()),
                          lambda a, d: a.validate_python(msgspec.json.decode(d)))
    return out


def parsers() -> dict[str, Callable[[bytes], object]]:
    """JSON parsers alone (no validation: what a consumer must not stop at)."""
    out: dict[str, Callable[[bytes], object]] = {"json": json.loads, "orjson": orjson.loads}
    if importlib.util.find_spec("msgspec") is not None:
        import msgspec

        out["msgspec"] = msgspec.json.decode
    return out


def cpu_per_item(fn: Callable[[], object], items: int, repeats: int) -> float:
    """Median CPU microseconds per item of ``fn`` (which handles ``items`` items), over ``repeats`` runs."""
    fn()  # warm caches (pydantic's and the allocator's)
    runs = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        runs.append(time.process_time() - t0)
    return statistics.median(runs) / items * 1e6


@dataclass
class Measured:
    topic: str
    path: str
    encode_us: float
    decode_us: float
    bytes_per_record: float
    #: Every record's bytes equal ``wire_bytes`` (byte-compatible on the wire).
    same_bytes: bool
    #: Every record decoded from ``wire_bytes`` by this path equals the original.
    round_trips: bool


def measure_path(topic: str, name: str, adapter: TypeAdapter[Any], records: Sequence[BaseModel],
                 coder: tuple[Encoder, Decoder], repeats: int) -> Measured:
    enc, dec = coder
    wire = [wire_bytes(r) for r in records]
    mine = [enc(r) for r in records]
    return Measured(
        topic=topic, path=name,
        encode_us=round(cpu_per_item(lambda: [enc(r) for r in records], len(records), repeats), 2),
        decode_us=round(cpu_per_item(lambda: [dec(adapter, d) for d in wire], len(records), repeats), 2),
        bytes_per_record=round(sum(map(len, wire)) / len(wire), 1), same_bytes=mine == wire,
        round_trips=all(dec(adapter, d) == r for d, r in zip(wire, records, strict=True)))


def measure(n: int, repeats: int) -> tuple[list[Measured], dict[str, dict[str, float]]]:
    coders = paths()
    results: list[Measured] = []
    parse: dict[str, dict[str, float]] = {}
    for topic, (adapter, records) in samples(n).items():
        for name, coder in coders.items():
            results.append(measure_path(topic, name, adapter, records, coder, repeats))
        parse[topic] = parse_cost([wire_bytes(r) for r in records], repeats)
    return results, parse


def parse_cost(wire: list[bytes], repeats: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, parse in parsers().items():
        out[name] = round(cpu_per_item(lambda: [parse(d) for d in wire], len(wire), repeats), 2)  # noqa: B023
    return out


def adapter_cost(n: int, repeats: int) -> dict[str, float]:
    """Decoding outcomes by model (``decode_model``: the benchmark's results reader, ``kmsync dlq replay``)
    with a TypeAdapter built for every record, as it was, against the adapter it keeps now."""
    wire = [wire_bytes(outcome(i)) for i in range(n)]
    return {
        "adapter per call": round(cpu_per_item(
            lambda: [decode_as(TypeAdapter(RecordOutcome), d) for d in wire], n, repeats), 2),
        "decode_model": round(cpu_per_item(lambda: [decode_model(RecordOutcome, d) for d in wire], n, repeats), 2),
    }


def per_pipeline_row(results: list[Measured]) -> dict[str, float]:
    """CPU seconds per 10,000 engagement rows spent in contract JSON on the capacity path, per path: a row
    is one engagement record (ingest encodes, transform decodes), two operations (transform encodes, the
    sink decodes) and two outcomes (the sink encodes)."""
    by = {(m.topic, m.path): m for m in results}
    out: dict[str, float] = {}
    for name in sorted({m.path for m in results}):
        se, op, oc = (by[(SESSION_ENGAGEMENT.name, name)], by[(MARKETO_OPS.name, name)],
                      by[(MARKETO_RESULTS.name, name)])
        us = se.encode_us + se.decode_us + 2 * (op.encode_us + op.decode_us) + 2 * oc.encode_us
        out[name] = round(us * 10_000 / 1e6, 3)
    return out


def render(results: list[Measured], parse: dict[str, dict[str, float]], row: dict[str, float],
           adapters: dict[str, float]) -> str:
    lines = [f"{'topic':<32} {'path':<15} {'encode µs':>9} {'decode µs':>9} {'bytes':>6}  same bytes  round trip"]
    for m in results:
        lines.append(f"{m.topic:<32} {m.path:<15} {m.encode_us:>9.2f} {m.decode_us:>9.2f} "
                     f"{m.bytes_per_record:>6.0f}  {'yes' if m.same_bytes else 'NO':<10}  "
                     f"{'yes' if m.round_trips else 'NO'}")
    lines.append("")
    lines.append("parse only, no validation (µs per record): " + "; ".join(
        f"{topic}: " + ", ".join(f"{k} {v:.2f}" for k, v in p.items()) for topic, p in parse.items()))
    lines.append("contract JSON per 10,000 pipeline rows (CPU s): " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    lines.append("decoding an outcome by model (µs per record): " + ", ".join(f"{k} {v:.2f}"
                                                                             for k, v in adapters.items()))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kmsync bench codecs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=2_000, help="records per topic (default 2,000)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per figure; the median is reported (7)")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    if args.records < 10 or args.repeats < 1:
        print("kmsync bench codecs: --records must be at least 10 and --repeats at least 1", file=sys.stderr)
        return 2
    results, parse = measure(args.records, args.repeats)
    row = per_pipeline_row(results)
    adapters = adapter_cost(args.records, args.repeats)
    print(render(results, parse, row, adapters))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"records": args.records, "repeats": args.repeats,
                                        "results": [asdict(m) for m in results], "parse_only_us": parse,
                                        "cpu_s_per_10k_pipeline_rows": row, "decode_model_us": adapters},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
