"""Normalising a provider's rows under the batch's row rules, and merging them into a Stocks/ file by date."""

import pytest

from stock_platform.downloads.prices import MergeError, PriceRow, kaggle_csv, merge_stock_file, normalise

HEADER = b"Date,Open,High,Low,Close,Volume,OpenInt\n"


def row(day: str, close: float = 10.0, volume: int = 100) -> PriceRow:
    return PriceRow(day, 10.0, max(10.0, close), min(10.0, close), close, volume)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (("2026-01-05", "", "11", "9", "10", "100"), "Open is missing"),  # a null in the provider's answer
        (("2026-01-05", "10", "11", "9", "", "100"), "Close is missing"),
        (("2026-01-05", "10", "11", "9", "10", ""), "Volume is missing"),
        (("2026-01-05", "10", "11", "9", "nan", "100"), "Close is not a finite number"),
        (("2026-02-30", "10", "11", "9", "10", "100"), "Date is not a valid ISO date (YYYY-MM-DD)"),
        (("2026-01-05", "10", "11", "9", "10", "-5"), "Volume is not a non-negative integer"),
    ],
)
def test_a_bad_row_is_rejected_under_the_batch_s_rules(raw, reason) -> None:
    good = ("2026-01-06", "10", "11", "9", "10.5", "100")
    normalised = normalise("aapl", [raw, good])
    assert [r.date for r in normalised.rows] == ["2026-01-06"]
    assert [r.reason for r in normalised.rejected] == [reason]
    assert normalised.rejected[0].line.startswith(raw[0])


def test_a_repeated_date_keeps_its_last_row() -> None:
    normalised = normalise("aapl", [("2026-01-05", "1", "1", "1", "1", "1"), ("2026-01-05", "2", "2", "2", "2", "2")])
    assert normalised.rows == (PriceRow("2026-01-05", 2.0, 2.0, 2.0, 2.0, 2),) and normalised.duplicates == 1


def test_a_new_file_gets_kaggle_s_header_and_sorted_rows() -> None:
    merge = merge_stock_file(None, [row("2026-01-06"), row("2026-01-05", 10.5)])
    assert merge.data == HEADER + b"2026-01-05,10.0,10.5,10.0,10.5,100,0\n2026-01-06,10.0,10.0,10.0,10.0,100,0\n"
    assert merge.new_dates == ("2026-01-05", "2026-01-06") and merge.corrected_dates == ()


def test_merging_the_same_rows_again_changes_nothing() -> None:
    existing = merge_stock_file(None, [row("2026-01-05")]).data
    assert merge_stock_file(existing, [row("2026-01-05")]).data is None
    # Numbers compare as numbers: the existing file's "10.00" is the download's 10.0.
    written_differently = HEADER + b"2026-01-05,10.00,10.0,10,10.000,100,0\n"
    assert merge_stock_file(written_differently, [row("2026-01-05")]).data is None


def test_a_corrected_value_replaces_the_line_and_is_counted_and_other_lines_keep_their_text() -> None:
    existing = HEADER + b"2026-01-02,1.2345,1.3,1.1,1.25,7,0\n2026-01-05,10.0,10.0,10.0,10.0,100,0\n"
    merge = merge_stock_file(existing, [row("2026-01-05", 12.5), row("2026-01-06")])
    assert merge.corrected_dates == ("2026-01-05",) and merge.new_dates == ("2026-01-06",)
    assert merge.data is not None
    lines = merge.data.decode().splitlines()
    assert lines == [
        HEADER.decode().strip(),
        "2026-01-02,1.2345,1.3,1.1,1.25,7,0",
        "2026-01-05,10.0,12.5,10.0,12.5,100,0",
        "2026-01-06,10.0,10.0,10.0,10.0,100,0",
    ]


def test_an_older_date_is_merged_into_date_order() -> None:
    existing = HEADER + b"2026-01-06,10.0,10.0,10.0,10.0,100,0\n"
    merge = merge_stock_file(existing, [row("2026-01-05")])
    assert merge.data is not None and [line[:10] for line in merge.data.decode().splitlines()[1:]] == [
        "2026-01-05",
        "2026-01-06",
    ]


def test_the_file_s_own_header_order_and_line_ends_are_kept() -> None:
    existing = b"date,close,open,high,low,volume\r\n2026-01-02,1,1,1,1,1\r\n"
    merge = merge_stock_file(existing, [row("2026-01-05", 10.5)])
    assert merge.data == existing + b"2026-01-05,10.5,10.0,10.5,10.0,100\r\n"


def test_an_unreadable_line_for_the_date_is_corrected() -> None:
    existing = HEADER + b"2026-01-05,,10.0,10.0,10.0,100,0\n"
    assert merge_stock_file(existing, [row("2026-01-05")]).corrected_dates == ("2026-01-05",)


@pytest.mark.parametrize(
    ("existing", "message"),
    [(b"\xff\xfe\x00D\x00a", "not UTF-8"), (b"Open,Close\n1,2\n", "no Date column")],
)
def test_a_file_that_cannot_be_merged_safely_is_left_alone(existing, message) -> None:
    with pytest.raises(MergeError, match=message):
        merge_stock_file(existing, [row("2026-01-05")])


def test_kaggle_csv_round_trips_through_the_row_rules() -> None:
    rows = [row("2026-01-05", 10.25, 7), row("2026-01-06", 9.75, 0)]
    data = kaggle_csv(rows).decode().splitlines()
    again = normalise("x", [tuple(line.split(",")[:6]) for line in data[1:]])
    assert list(again.rows) == rows and not again.rejected
