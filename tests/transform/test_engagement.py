"""Engagement → the seed's custom object record and activity attributes: typed, rates as fractions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kmsync_config.tenants import TenantsConfig
from kmsync_contracts import SessionEngagement
from kmsync_contracts.seed import ENGAGEMENT_ACTIVITY_FIELDS, ENGAGEMENT_OBJECT_FIELDS
from kmsync_transform.engagement import (
    clamp_fraction,
    engagement_activity_attributes,
    engagement_object_record,
    normalise_rates,
)

from .conftest import EVENT, LEGACY_EVENT, PARTNER

FULL = dict(
    entry_name="Keynote live", channel_id=9, channel_name="Hall", plays=3, vod_minutes_viewed=2,
    live_minutes_viewed=41.5, total_vod_completion_rate=0.5, no_live_engagement_rate=0.1,
    low_live_engagement_rate=0.2, fair_live_engagement_rate=0.3, good_live_engagement_rate=0.25,
    high_live_engagement_rate=0.15, clap_clicked_count=1, heart_clicked_count=2, think_clicked_count=0,
    wow_clicked_count=4, smile_clicked_count=5, answered_polls=2, messages_sent_group=7, qna_threads=1,
    combined_live_engaged_users_play_time_ratio=0.8, add_to_calendar=1, mic_on=3, cam_on=0.5,
    total_reactions_activity=12, raise_hand=2,
)


def test_clamp() -> None:
    assert [clamp_fraction(v) for v in (-0.1, 0.0, 0.42, 1.0, 1.7)] == [0.0, 0.0, 0.42, 1.0, 1.0]


def test_rates_read_as_percentages_when_any_is_above_one(
    engagement_record: Callable[..., SessionEngagement],
) -> None:
    snap = engagement_record(good_live_engagement_rate=55.0, no_live_engagement_rate=0.5,
                             total_vod_completion_rate=250.0)
    rates = normalise_rates(snap)
    assert rates["good_live_engagement_rate"] == pytest.approx(0.55)
    assert rates["no_live_engagement_rate"] == pytest.approx(0.005)  # same scale for the whole snapshot
    assert rates["total_vod_completion_rate"] == 1.0  # clamped
    assert rates["high_live_engagement_rate"] is None  # missing stays missing


def test_rates_stay_fractions_when_all_are_at_most_one(
    engagement_record: Callable[..., SessionEngagement],
) -> None:
    rates = normalise_rates(engagement_record(good_live_engagement_rate=1.0, low_live_engagement_rate=0.3))
    assert rates["good_live_engagement_rate"] == 1.0
    assert rates["low_live_engagement_rate"] == pytest.approx(0.3)


def test_forced_scales(engagement_record: Callable[..., SessionEngagement]) -> None:
    snap = engagement_record(good_live_engagement_rate=0.5)
    assert normalise_rates(snap, "percent")["good_live_engagement_rate"] == pytest.approx(0.005)
    assert normalise_rates(engagement_record(good_live_engagement_rate=80.0), "fraction")[
        "good_live_engagement_rate"] == 1.0


def test_object_record_has_every_seed_field_typed(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
) -> None:
    ev = tenants.event(PARTNER, EVENT)
    assert ev is not None
    record = engagement_object_record(engagement_record(**FULL), "ann@example.com", ev)
    # every seed field except the lead link, which the sink fills in, in the seed's order
    assert list(record) == [f.name for f in ENGAGEMENT_OBJECT_FIELDS if f.name != "personId"]
    for spec in ENGAGEMENT_OBJECT_FIELDS:
        if spec.name == "personId":
            continue
        expected = {"integer": int, "float": float, "string": str}[spec.data_type]
        assert type(record[spec.name]) is expected, spec.name
    assert record["vod_minutes_viewed"] == 2.0 and record["mic_on"] == 3.0
    assert (record["entry_id"], record["email"], record["user"]) == ("0_keynote", "ann@example.com", "u1")
    assert (record["channel_id"], record["channel_name"]) == (9, "Hall")


def test_missing_metrics_are_left_out_and_session_config_fills_names(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
) -> None:
    ev = tenants.event(PARTNER, EVENT)
    assert ev is not None
    record = engagement_object_record(engagement_record(plays=1), "ann@example.com", ev)
    assert "live_minutes_viewed" not in record  # never blank what another report delivered
    assert (record["entry_name"], record["channel_id"], record["channel_name"]) == ("Keynote", 7, "Main")


def test_activity_attributes(tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement]) -> None:
    ev = tenants.event(PARTNER, EVENT)
    assert ev is not None
    attrs = engagement_activity_attributes(engagement_record(**FULL), "ann@example.com", ev)
    assert list(attrs) == [f.name for f in ENGAGEMENT_ACTIVITY_FIELDS if f.name != "entry_id"]
    assert "answered_polls" not in attrs  # not an activity field in the seed


def test_legacy_mode_channel_zero_and_empty_name(
    tenants: TenantsConfig, engagement_record: Callable[..., SessionEngagement],
) -> None:
    ev = tenants.event(PARTNER, LEGACY_EVENT)
    assert ev is not None
    attrs = engagement_activity_attributes(
        engagement_record(event=LEGACY_EVENT, **FULL), "ann@example.com", ev)
    assert attrs["channel_id"] == 0
    assert attrs["channel_name"] == ""
