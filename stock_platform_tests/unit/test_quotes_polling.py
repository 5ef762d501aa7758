"""The polling intake's pure parts: the watchlist, market hours, and turning the price source's answers into
quotes (with the downloads domain's own LatestPrice, so the two domains cannot drift apart)."""

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from stock_platform.batch.selection import listed_companies
from stock_platform.batch.sources import decode_company_list
from stock_platform.quotes.polling import in_market_hours, parse_watchlist, poll, quote_of, tickers_of
from stock_platform.resources.price_source import LatestPrice, PriceUnavailableError

NY = "America/New_York"
OPEN, CLOSE = time(9, 30), time(16, 0)


class FakeSource:
    def __init__(self, answers: dict[str, LatestPrice]) -> None:
        self.answers = answers

    def fetch_latest(self, ticker: str) -> LatestPrice:
        if ticker not in self.answers:
            raise PriceUnavailableError(f"No latest price for {ticker}: not listed")
        return self.answers[ticker]


def test_the_watchlist_reads_tickers_or_company_list_entries() -> None:
    assert parse_watchlist("aapl, BRK.B,\nmsft, AAPL, ../x") == ["AAPL", "BRK.B", "MSFT"]
    entries = decode_company_list(b"'aapl.us.csv', 'MSFT.us.txt',\n\"ge\", aapl.us.txt, ../x, 'b@d'", "s3://b/list")
    assert tickers_of(listed_companies(entries)) == ["AAPL", "MSFT", "GE"]


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        (datetime(2024, 3, 4, 9, 29), False),
        (datetime(2024, 3, 4, 9, 30), True),
        (datetime(2024, 3, 4, 16, 0), True),
        (datetime(2024, 3, 4, 16, 1), False),
        (datetime(2024, 3, 10, 11, 0), False),  # Sunday
        (datetime(2024, 3, 11, 9, 45), True),  # the Monday after the switch to daylight saving time
        (datetime(2026, 11, 26, 11, 0), False),  # Thanksgiving Day: the exchange is closed
    ],
)
def test_market_hours_are_the_exchanges(local: datetime, inside: bool) -> None:
    moment = local.replace(tzinfo=ZoneInfo(NY)).astimezone(timezone.utc)
    assert in_market_hours(moment, NY, OPEN, CLOSE) is inside


def test_a_configured_closure_is_outside_market_hours() -> None:
    moment = datetime(2026, 3, 10, 11, 0, tzinfo=ZoneInfo(NY))
    assert in_market_hours(moment, NY, OPEN, CLOSE)
    assert not in_market_hours(moment, NY, OPEN, CLOSE, closed_days=[date(2026, 3, 10)])


def test_a_poll_keeps_every_answer_and_says_why_a_ticker_has_none() -> None:
    at = datetime(2024, 3, 4, 15, 0, tzinfo=timezone.utc)
    source = FakeSource(
        {
            "AAPL": LatestPrice("aapl", at, 187.5, 1000, "yahoo"),
            "NAIVE": LatestPrice("NAIVE", at.replace(tzinfo=None), 1.0, None, "yahoo"),
        }
    )
    polled = poll(source, ["AAPL", "MSFT", "NAIVE"])
    assert [(q.ticker, q.price, q.volume, q.source) for q in polled.quotes] == [("AAPL", 187.5, 1000, "yahoo")]
    assert set(polled.errors) == {"MSFT", "NAIVE"}
    assert "not listed" in polled.errors["MSFT"] and "time zone" in polled.errors["NAIVE"]


def test_the_latest_price_becomes_a_quote_of_the_same_instant() -> None:
    at = datetime(2024, 3, 4, 10, 0, tzinfo=ZoneInfo(NY))
    quote = quote_of(LatestPrice("MSFT", at, 400.0, None, "stooq"))
    assert quote.key == ("MSFT", "2024-03-04T15:00:00.000000Z")
