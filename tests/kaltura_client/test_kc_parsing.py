"""Kaltura report CSV and report-table parsing: BOM, header names, bad rows with line numbers."""

from __future__ import annotations

import pytest

from kmsync_kaltura import (
    CsvHeaderError,
    EngagementCsvRow,
    KalturaResponseError,
    Located,
    RowError,
    iter_report_csv,
    parse_engagement_csv,
    parse_engagement_table,
    parse_poll_answers_csv,
    report_from_filename,
)

HEADER_4021 = (
    "email,combined_live_engaged_users_play_time_ratio,download_attachment,add_to_calendar,raise_hand,mic_on,"
    "cam_on,clap_clicked_count,heart_clicked_count,think_clicked_count,wow_clicked_count,smile_clicked_count,"
    "total_reactions_activity,answered_polls,messages_sent_group,qna_threads"
)
GOOD = "Jane.Doe@Acme.com,0.81,0,1,1,2.5,0,3,2,0,1,1,7,2,3,1"


def test_bom_header_and_values_by_name() -> None:
    data = ("\ufeff" + HEADER_4021 + "\n" + GOOD + "\n").encode("utf-8")
    result = parse_engagement_csv(data, entry_id="1_abc")
    assert not result.errors
    [located] = result.rows
    row = located.row
    assert located.line == 2
    assert (row.entry_id, row.email, row.total_reactions_activity, row.mic_on) == ("1_abc", "Jane.Doe@Acme.com", 7, 2.5)
    assert row.combined_live_engaged_users_play_time_ratio == 0.81


def test_same_result_without_bom_and_with_columns_in_another_order() -> None:
    names = HEADER_4021.split(",")
    values = GOOD.split(",")
    order = list(reversed(range(len(names))))
    shuffled = ",".join(names[i] for i in order) + "\n" + ",".join(values[i] for i in order) + "\n"
    a = parse_engagement_csv(shuffled, entry_id="1_abc").values
    b = parse_engagement_csv(("\ufeff" + HEADER_4021 + "\n" + GOOD).encode(), entry_id="1_abc").values
    assert a == b and len(a) == 1


def test_bad_rows_are_reported_with_line_numbers_while_good_rows_go_through() -> None:
    lines = [
        "\ufeff" + HEADER_4021,
        GOOD,                                                  # 2 ok
        "",                                                    # 3 blank: skipped, still counted
        "bob@acme.com,0.5,0,0,0,0,0,0,0,0,0,0,0,N/A,0,0",      # 4 non-numeric
        "carol@acme.com,0.5,0,0,0,0,0,0,0,0,0,0,0",            # 5 missing fields
        ",0.5,0,0,0,0,0,0,0,0,0,0,0,0,0,0",                    # 6 missing email
        "dave(at)acme.com,0.5,0,0,0,0,0,0,0,0,0,0,0,0,0,0",    # 7 bad email
        "erin@acme.com,0.5,0,0,1.5,0,0,0,0,0,0,0,0,0,0,0",     # 8 count with a fraction
        "frank@acme.com,-0.5,0,0,0,0,0,0,0,0,0,0,0,0,0,0",     # 9 negative metric
        "GRACE@ACME.COM,0.25,1,0,0,0,0,0,0,0,0,0,0,0,0,0",     # 10 ok
        "henry@acme.com,0.5,0,0,0,inf,0,0,0,0,0,0,0,0,0,0",    # 11 infinite metric
        "ivy@acme.com,0.5,0,0,0,0,1e400,0,0,0,0,0,0,0,0,0",    # 12 a metric that overflows to infinity
    ]
    result = parse_engagement_csv("\n".join(lines) + "\n", entry_id="1_x")
    assert [r.line for r in result.rows] == [2, 10]
    errors = {e.line: e for e in result.errors}
    assert sorted(errors) == [4, 5, 6, 7, 8, 9, 11, 12]
    assert "answered_polls" in errors[4].message and "N/A" in errors[4].message
    assert errors[5].message == "expected 16 fields, got 13"
    assert "email" in errors[6].message and "missing" in errors[6].message
    assert "dave(at)acme.com" in errors[7].message
    assert "raise_hand" in errors[8].message and "whole number" in errors[8].message
    assert "combined_live_engaged_users_play_time_ratio" in errors[9].message
    assert errors[5].raw.startswith("carol@acme.com")
    assert "mic_on" in errors[11].message and "finite" in errors[11].message
    assert "cam_on" in errors[12].message and "finite" in errors[12].message


def test_email_check_can_be_turned_off() -> None:
    data = HEADER_4021 + "\ndave(at)acme.com,0.5,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n"
    assert parse_engagement_csv(data, entry_id="e", validate_email=False).values[0].email == "dave(at)acme.com"
    assert parse_engagement_csv(data, entry_id="e").errors


def test_header_missing_columns_or_empty_file_is_a_header_error() -> None:
    with pytest.raises(CsvHeaderError) as caught:
        parse_engagement_csv("email,answered_polls\nx@y.com,1\n", entry_id="e")
    assert "qna_threads" in caught.value.missing
    with pytest.raises(CsvHeaderError):
        parse_engagement_csv(b"\xef\xbb\xbf", entry_id="e")


def test_streaming_over_byte_chunks_keeps_line_numbers() -> None:
    text = "\ufeff" + HEADER_4021 + "\n" + GOOD + "\nbad-row\n" + GOOD.replace("Jane", "Jim") + "\n"
    chunks = [line.encode("utf-8") for line in text.splitlines(keepends=True)]
    outcomes = list(iter_report_csv(chunks, EngagementCsvRow, stamp={"entry_id": "e"}))
    assert [type(o) for o in outcomes] == [Located, RowError, Located]
    assert [o.line for o in outcomes] == [2, 3, 4]


def test_poll_answers_csv_in_the_assumed_layout() -> None:
    data = (
        "\ufeffentry_id,poll_id,poll_type,question,user_id,email,answer,answered_at\n"
        "1_a,p1,rating scale,How was it?,u1,U1@Example.com,4,2025-06-16T13:05:00.000Z\n"
        "1_a,p2,open answers,What should we improve  and why?,u1,U1@Example.com,More demos,2025-06-16T13:06:00Z\n"
        "1_a,p3,crowd vote,Yes or no?,u2,u2@example.com,Yes\n"
        "1_a,p3,crowd vote,Yes or no?,u3,u3@example.com,No,yesterday\n"
    ).encode()
    result = parse_poll_answers_csv(data)
    assert [r.line for r in result.rows] == [2, 3]
    first = result.rows[0].row
    assert (first.entry_id, first.poll_type, first.answer, first.answered_at.tzinfo is not None) == (
        "1_a", "rating scale", "4", True)
    assert [e.line for e in result.errors] == [4, 5]
    assert "answered_at" in result.errors[1].message


def test_report_file_names() -> None:
    found = report_from_filename("exports/Report_4021_1234567_1_abc.csv")
    assert found is not None and (found.report_id, found.partner_id) == (4021, 1234567)
    assert report_from_filename("polls.csv") is None


HEADER_60013 = (
    "first_name|last_name|title|company|email|country|role|industry|vod_view_time|live_view_time|total_view_time|"
    "avg_completion_rate|count_reaction_clicked|count_raise_hand_clicked|"
    "combined_live_engaged_users_play_time_ratio|count_group_chat_messages_sent|count_poll_answered|"
    "count_q_and_a_threads|count_download_attachment_clicked"
)


def test_report_table_trailing_semicolon_delimiter_and_row_numbers() -> None:
    data = (
        "Jane|Doe|VP|Acme|jane@acme.com|United States|VP|Software|3.5|41.25|44.75|0.62|7|1|0.81|3|2|1|0;"
        "John|Roe|CTO|Initech|john@initech.com|Israel|CTO|Software|0|10|10|0.2|0|0|0.5|0|0|0;"
        "Ann|Lee|Dev|Hooli|ann@hooli.xyz|Japan|Dev|Media|1|2|3|0.1|0|0|0.2|0|0|0|0;"
    )
    result = parse_engagement_table(HEADER_60013, data, "|", entry_id="1_s", first_row_number=501)
    assert [r.line for r in result.rows] == [501, 503]
    jane = result.rows[0].row
    assert (jane.total_view_time, jane.count_reaction_clicked, jane.avg_completion_rate) == (44.75, 7, 0.62)
    assert result.errors[0].line == 502 and "expected 19 fields, got 18" == result.errors[0].message


def test_report_table_by_header_name_not_position() -> None:
    names = HEADER_60013.split("|")
    row = "Jane|Doe|VP|Acme|jane@acme.com|US|VP|Software|3.5|41.25|44.75|0.62|7|1|0.81|3|2|1|0".split("|")
    perm = names[::-1], row[::-1]
    a = parse_engagement_table(HEADER_60013, "|".join(row) + ";", "|", entry_id="e").values
    b = parse_engagement_table("|".join(perm[0]), "|".join(perm[1]) + ";", "|", entry_id="e").values
    assert a == b and a[0].count_poll_answered == 2


def test_report_table_empty_and_broken_header() -> None:
    assert parse_engagement_table(HEADER_60013, "", "|", entry_id="e").rows == []
    with pytest.raises(KalturaResponseError):
        parse_engagement_table("email|first_name", "a@b.co|A;", "|", entry_id="e")
    with pytest.raises(ValueError):
        parse_engagement_table(HEADER_60013, "", ";", entry_id="e")
