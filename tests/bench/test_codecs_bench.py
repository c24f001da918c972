"""`kmsync bench codecs`: the JSON paths it compares are byte-compatible with the wire format, every
decode validates, and the shared codec (kmsync_contracts.codecs) is the path it chose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmsync_bench import codecs as bench
from kmsync_bench.cli import main as bench_main
from kmsync_contracts.codecs import ContractError, decode, encode
from kmsync_contracts.topics import MARKETO_OPS, SESSION_ENGAGEMENT


def test_kmsync_bench_codecs_measures_every_path_on_every_topic(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "codecs.json"
    assert bench_main(["codecs", "--records", "20", "--repeats", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    paths = {m["path"] for m in data["results"]}
    assert {"pydantic-str", "pydantic-bytes", "orjson"} <= paths
    assert {m["topic"] for m in data["results"]} == {"kaltura.session-engagement.v1", "kaltura.attendee-status.v1",
                                                     "marketo.ops.v1", "marketo.results.v1"}
    for m in data["results"]:
        assert m["encode_us"] > 0 and m["decode_us"] > 0 and m["bytes_per_record"] > 100
        assert m["round_trips"], m  # every path decodes the wire format back to the same records
    assert all(m["same_bytes"] for m in data["results"] if m["path"].startswith("pydantic"))
    assert set(data["cpu_s_per_10k_pipeline_rows"]) == paths
    assert set(data["decode_model_us"]) == {"adapter per call", "decode_model"}
    assert "contract JSON per 10,000 pipeline rows" in capsys.readouterr().out
    assert bench_main(["codecs", "--records", "5"]) == 2


def test_the_shared_encode_writes_the_wire_format_bytes_for_bytes() -> None:
    # Records written before the codec changed and after it are the same bytes: old consumers and
    # old records keep working.
    for topic, (adapter, records) in bench.samples(40).items():
        for record in records:
            data = encode(record)
            assert isinstance(data, bytes) and data == bench.wire_bytes(record), topic
            assert adapter.validate_json(data) == record


def test_decoding_still_validates_what_a_topic_holds() -> None:
    op = bench.samples(10)[MARKETO_OPS.name][1][0]
    with pytest.raises(ContractError, match="munchkin_id"):
        decode(MARKETO_OPS, encode(op).replace(b'"munchkin_id":"111-AAA-111"', b'"munchkin_id":""'))
    snapshot = bench.engagement(3)
    with pytest.raises(ContractError, match="plays|qna_threads"):
        decode(SESSION_ENGAGEMENT, encode(snapshot).replace(b'"qna_threads":0', b'"qna_threads":-1'))


def test_decode_model_keeps_one_adapter_per_model() -> None:
    from kmsync_contracts import codecs as contract_codecs
    from kmsync_contracts.outcomes import RecordOutcome

    data = encode(bench.outcome(1))
    assert contract_codecs.decode_model(RecordOutcome, data) == bench.outcome(1)
    adapter = contract_codecs._ADAPTERS[RecordOutcome]
    assert contract_codecs.decode_model(RecordOutcome, data) == bench.outcome(1)
    assert contract_codecs._ADAPTERS[RecordOutcome] is adapter
