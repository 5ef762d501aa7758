"""The polling intake: the watchlist's latest prices, fetched from a price source, as Quotes. Dagster-free.

Written against `PriceSource`, a Protocol with the one method the downloads domain's price_source resource
offers, so tests use a fake and this module never imports the real source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Protocol
from zoneinfo import ZoneInfo

from stock_platform import trading_days
from stock_platform.batch.selection import listed_companies
from stock_platform.batch.sources import decode_company_list
from stock_platform.quotes.model import Quote, QuoteError, normalize_ticker, parse_price, parse_source, parse_volume
from stock_platform.resources.s3 import SourceBucket


class LatestPriceLike(Protocol):
    @property
    def ticker(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def price(self) -> float: ...
    @property
    def volume(self) -> int | None: ...
    @property
    def source(self) -> str: ...


class PriceSource(Protocol):
    def fetch_latest(self, ticker: str) -> LatestPriceLike: ...


@dataclass(frozen=True)
class Polled:
    quotes: list[Quote]
    errors: dict[str, str]  # ticker -> why it has no quote this time


def in_market_hours(
    moment: datetime, exchange_tz: str, market_open: time, market_close: time, closed_days: Iterable[date] = ()
) -> bool:
    """A trading day (trading_days.py), open <= local time <= close (the close itself is polled: it carries the
    closing price)."""
    local = moment.astimezone(ZoneInfo(exchange_tz))
    is_open = trading_days.closure(local.date(), closed_days) is None
    return is_open and market_open <= local.time().replace(tzinfo=None) <= market_close


def quote_of(latest: LatestPriceLike) -> Quote:
    if latest.time.tzinfo is None or latest.time.utcoffset() is None:
        raise QuoteError(f"the time {latest.time.isoformat()} has no time zone")
    return Quote(
        ticker=normalize_ticker(latest.ticker),
        event_time=latest.time,
        price=parse_price(latest.price),
        volume=parse_volume(latest.volume),
        source=parse_source(latest.source, "poll"),
    )


def poll(source: PriceSource, tickers: Sequence[str]) -> Polled:
    """Fetch each ticker's latest price; one ticker's failure is recorded and does not stop the others."""
    quotes: list[Quote] = []
    errors: dict[str, str] = {}
    for ticker in tickers:
        try:
            quotes.append(quote_of(source.fetch_latest(ticker)))
        except Exception as error:  # noqa: BLE001 - a source's failure is reported per ticker, with its text
            errors[ticker] = f"{type(error).__name__}: {error}"
    return Polled(quotes, errors)


def tickers_of(names: Iterable[str]) -> list[str]:
    """Tickers in order, once each; unusable names are skipped (the batch reports an unusable list entry)."""
    tickers: list[str] = []
    for name in names:
        try:
            ticker = normalize_ticker(name)
        except QuoteError:
            continue
        if ticker not in tickers:
            tickers.append(ticker)
    return tickers


def parse_watchlist(text: str) -> list[str]:
    """The tickers of a comma-separated list (`AAPL, BRK.B`), in order, once each."""
    return tickers_of(e for raw in text.replace("\n", ",").split(",") if (e := raw.strip().strip("'\"").strip()))


def watchlist(bucket: SourceBucket, configured: str) -> list[str]:
    """The configured tickers, or the tickers of the companies the batch's company list names
    (CompanyNames/top_companies.txt: `'aapl.us.txt'` -> `AAPL`)."""
    if configured.strip():
        return parse_watchlist(configured)
    entries = decode_company_list(bucket.get_bytes(bucket.company_list_key), bucket.uri(bucket.company_list_key))
    return tickers_of(listed_companies(entries))
