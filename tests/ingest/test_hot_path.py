"""Ingest's cheaper hot path changes no record and no partition: the partition of every key is the
one aiokafka's default partitioner (Kafka's murmur2) gives, and a report 4021 row built from its
context's template is the very record full validation builds - while everything validation refuses
is still refused with the same errors. Pure."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from pydantic import ValidationError

from kmsync_contracts import SessionEngagement, encode
from kmsync_ingest import mapping
from kmsync_ingest.mapping import RecordContext, engagement_from_csv
from kmsync_ingest.partitioning import murmur2, partition_for
from kmsync_kaltura.models import EngagementCsvRow

AT = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
CTX = RecordContext(partner_id=1234567, virtual_event_id=12, source="file", source_time=AT, ingested_at=AT,
                    entry_name="Keynote", channel_id=7, channel_name="Main", is_final=True)
COUNTS = ("download_attachment", "add_to_calendar", "raise_hand", "clap_clicked_count", "heart_clicked_count",
          "think_clicked_count", "wow_clicked_count", "smile_clicked_count", "total_reactions_activity",
          "answered_polls", "messages_sent_group", "qna_threads")
METRICS = ("combined_live_engaged_users_play_time_ratio", "mic_on", "cam_on")


def test_murmur2_equals_aiokafkas_for_every_length_and_random_bytes() -> None:
    rng = random.Random(22)
    for length in range(0, 130):
        for _ in range(40):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data), data


@pytest.mark.parametrize("partitions", [1, 2, 3, 6, 12, 50])
def test_the_partition_of_each_key_is_the_default_partitioners(partitions: int) -> None:
    default = DefaultPartitioner()
    everything = list(range(partitions))
    keys = [f"1234567:12:user{i}@example.com".encode() for i in range(2_000)]
    keys += ["1234567:12:Ünïcødé@例え.jp".encode(), b"", b"a", b"ab", b"abc"]
    for key in keys + keys:  # the second time from the cache
        assert partition_for(key, partitions) == default(key, everything, everything), key
    with pytest.raises(ValueError):
        partition_for(b"k", 0)


def row(i: int, **overrides: str) -> EngagementCsvRow:
    cells: dict[str, str] = {"entry_id": "1_abc", "email": f"user{i}@example.com"}
    cells.update({name: str(i % 9) for name in COUNTS})
    cells.update({name: f"{(i % 100) / 7:g}" for name in METRICS})
    cells.update(overrides)
    return EngagementCsvRow.model_validate(cells)


def validated(r: EngagementCsvRow, ctx: RecordContext, ref: str) -> SessionEngagement:
    """What engagement_from_csv built before the template: every row through model_validate."""
    return SessionEngagement.model_validate({**mapping._engagement_base(r, ctx, ref),
                                             **{f: getattr(r, f) for f in mapping._CSV_4021_FIELDS}})


def test_a_templated_record_is_the_validated_record_byte_for_byte() -> None:
    for i in range(300):
        r, ref = row(i), f"file:Report_4021.csv:line {i + 2}"
        fast, slow = engagement_from_csv(r, CTX, ref), validated(r, CTX, ref)
        assert fast == slow and encode(fast) == encode(slow)
        assert fast.model_fields_set == slow.model_fields_set
    assert mapping._engagement_template(CTX) is not None, "the template path was taken"


def test_a_context_that_validation_would_alter_or_refuse_is_validated_row_by_row() -> None:
    spaced = replace(CTX, entry_name="  Keynote  ")
    r = row(1)
    assert mapping._engagement_template(spaced) is None
    assert engagement_from_csv(r, spaced, "ref").entry_name == "Keynote"  # stripped, as validation does
    naive = replace(CTX, source_time=datetime(2026, 11, 27, 6, 0))  # an exported_at without a zone
    assert mapping._engagement_template(naive) is None
    with pytest.raises(ValidationError) as err:
        engagement_from_csv(r, naive, "ref")
    assert ("source_time",) in [e["loc"] for e in err.value.errors()]


@pytest.mark.parametrize("field", METRICS)
def test_a_row_the_contract_refuses_is_still_refused(field: str) -> None:
    with pytest.raises(ValidationError, match="finite"):
        row(3, **{field: "inf"})  # the 4021 row model refuses infinity at the boundary ...
    r = row(3).model_copy(update={field: float("inf")})  # ... and a row that carries it anyway still is
    with pytest.raises(ValidationError) as err:
        engagement_from_csv(r, CTX, "ref")
    assert (field,) in [e["loc"] for e in err.value.errors()]
    padded_ref = " file:x.csv:line 3 "
    assert engagement_from_csv(row(3), CTX, padded_ref).source_ref == padded_ref.strip()
