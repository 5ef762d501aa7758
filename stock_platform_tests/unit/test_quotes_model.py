"""The quote format and the pure rules over it: parsing, identity, months and days on the exchange's calendar,
the monthly log's merge and inspection."""

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from stock_platform.quotes.model import (
    Quote,
    QuoteError,
    decode_batch,
    dedupe,
    encode_batch,
    month_of,
    parse_record,
    trading_day,
)
from stock_platform.quotes.monthly_log import HEADER, inspect_month, merge_month, read_rows

NY = "America/New_York"
UTC = timezone.utc
T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)


def quote(ticker: str = "AAPL", minutes: float = 0, price: float = 10.0, source: str = "t") -> Quote:
    return Quote(ticker, T0 + timedelta(minutes=minutes), price, 5, source)


def record(**fields: object) -> bytes:
    return json.dumps(fields).encode()


class TestParse:
    def test_a_full_record(self) -> None:
        q = parse_record(record(ticker="aapl", event_time="2024-03-04T10:00:00-05:00", price="187.5", volume=300))
        assert q == Quote("AAPL", datetime(2024, 3, 4, 15, 0, tzinfo=UTC), 187.5, 300, "kinesis")
        assert q.key == ("AAPL", "2024-03-04T15:00:00.000000Z")

    def test_epoch_seconds_and_z(self) -> None:
        a = parse_record(record(ticker="GE", time=T0.timestamp(), price=1))
        b = parse_record(record(ticker="GE", timestamp="2024-03-04T15:00:00Z", price=1, source="poll"))
        assert a.key == b.key and b.source == "poll" and a.volume is None

    @pytest.mark.parametrize(
        ("fields", "says"),
        [
            ({"ticker": "AAPL", "price": 1}, "no event time"),
            ({"ticker": "AAPL", "event_time": "2024-03-04T10:00:00", "price": 1}, "no time zone"),
            ({"ticker": "AAPL", "event_time": "yesterday", "price": 1}, "ISO 8601"),
            ({"ticker": "AAPL", "event_time": "2015-01-02T10:00:00Z", "price": 1}, "before 2016-07"),
            ({"ticker": "../x", "event_time": "2024-03-04T10:00:00Z", "price": 1}, "not a ticker"),
            ({"ticker": "AAPL", "event_time": "2024-03-04T10:00:00Z", "price": "NaN"}, "positive"),
            ({"ticker": "AAPL", "event_time": "2024-03-04T10:00:00Z", "price": 0}, "positive"),
            ({"ticker": "AAPL", "event_time": "2024-03-04T10:00:00Z", "price": ""}, "not a number"),
            ({"ticker": "AAPL", "event_time": "2024-03-04T10:00:00Z", "price": 1, "volume": 1.5}, "whole"),
            ({"ticker": "AAPL", "event_time": True, "price": 1}, "not a time"),
        ],
    )
    def test_bad_records_say_why(self, fields: dict[str, object], says: str) -> None:
        with pytest.raises(QuoteError, match=says):
            parse_record(record(**fields))

    def test_not_json(self) -> None:
        with pytest.raises(QuoteError, match="JSON"):
            parse_record(b"\xff")
        with pytest.raises(QuoteError, match="object"):
            parse_record(b"[1]")


class TestCalendar:
    def test_the_month_and_day_are_the_exchanges(self) -> None:
        evening = datetime(2024, 2, 1, 1, 30, tzinfo=UTC)  # January 31st, 20:30 in New York
        assert month_of(evening, NY) == "202401" and month_of(evening, "UTC") == "202402"
        assert trading_day(evening, NY) == date(2024, 1, 31)

    def test_identity_is_the_instant_not_its_spelling(self) -> None:
        a = Quote("AAPL", datetime(2024, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=-5))), 1.0, None, "x")
        b = Quote("AAPL", T0, 2.0, None, "y")
        assert a.key == b.key and dedupe([a, b]) == [a]

    def test_dedupe_orders_by_time_then_ticker(self) -> None:
        quotes = [quote("MSFT", 1), quote("AAPL", 1), quote("AAPL", 0), quote("MSFT", 1, price=99)]
        assert [(q.ticker, q.price) for q in dedupe(quotes)] == [("AAPL", 10.0), ("AAPL", 10.0), ("MSFT", 10.0)]

    def test_a_staged_batch_round_trips(self) -> None:
        quotes = [quote("AAPL", 0), quote("GE", 1.5)]
        rejected = [{"reason": "bad", "data": "x"}]
        assert decode_batch(encode_batch(quotes, rejected)) == (quotes, rejected)


class TestMonthlyLog:
    def test_a_new_month_has_a_header_and_rows_in_time_order(self) -> None:
        merged = merge_month(None, [quote("MSFT", 2), quote("AAPL", 1), quote("AAPL", 1)])
        lines = merged.data.decode().splitlines()
        assert lines[0] == ",".join(HEADER)
        assert [line.split(",")[0] for line in lines[1:]] == ["AAPL", "MSFT"]
        assert merged.rows == 2 and len(merged.added) == 2

    def test_quotes_already_present_are_skipped_and_late_ones_sorted_in(self) -> None:
        first = merge_month(None, [quote("AAPL", 0), quote("AAPL", 10)])
        second = merge_month(first.data, [quote("AAPL", 10, price=99), quote("AAPL", 5)])
        assert [q.key for q in second.added] == [quote("AAPL", 5).key]
        assert [r[1][11:16] for r in read_rows(second.data)] == ["15:00", "15:05", "15:10"]
        assert read_rows(second.data)[2][2] == "10.0"  # the first delivery of a key is kept
        assert merge_month(second.data, [quote("AAPL", 5)]).added == ()

    def test_inspection_finds_duplicates_and_disorder(self) -> None:
        clean = merge_month(None, [quote("AAPL", m) for m in range(3)]).data
        assert inspect_month(clean).duplicate_keys == () and inspect_month(clean).out_of_order_rows == ()
        lines = clean.decode().splitlines()
        broken = "\n".join([lines[0], lines[2], lines[1], lines[2]]).encode()
        facts = inspect_month(broken)
        assert facts.rows == 3
        assert facts.duplicate_keys == (("AAPL", "2024-03-04T15:01:00.000000Z"),)
        assert facts.out_of_order_rows == (2,)
