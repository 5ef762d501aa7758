"""The one quote format of the intraday domain, and the pure rules over it (no Dagster, no I/O).

Both intakes (the Kinesis stream and the polling schedule) produce `Quote`s; the monthly log, the lake, the
PostgreSQL landing and the alerts consume them. A quote's identity is (ticker, event time): delivery is
at-least-once, so every consumer de-duplicates on that key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

# Tickers become S3 key parts and Hive partition values: letters, digits, "." and "-" only (BRK.B, TDW-WS).
_TICKER = re.compile(r"^[A-Z0-9][A-Z0-9.-]{0,19}$")
_SOURCE = re.compile(r"^[\w.:/-]{1,64}$", re.ASCII)
# Fixed width, UTC: the text sorts exactly as the instants do, so the monthly log orders and de-duplicates by text.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
EARLIEST = datetime(2016, 7, 1, tzinfo=timezone.utc)  # the first month partition (201607)
TIME_KEYS = ("event_time", "time", "timestamp")


class QuoteError(ValueError):
    """A record that is not a valid quote; the message says which field and why."""


@dataclass(frozen=True)
class Quote:
    ticker: str  # upper case (AAPL); the batch's company name is its lower case
    event_time: datetime  # time zone aware
    price: float
    volume: int | None
    source: str

    @property
    def key(self) -> tuple[str, str]:
        """(ticker, event time as canonical UTC text): the identity every consumer de-duplicates on."""
        return self.ticker, self.time_text

    @cached_property  # the identity of every comparison, merge and sort: formatted once per quote
    def time_text(self) -> str:
        return format_time(self.event_time)

    @property
    def company(self) -> str:
        return company_of_ticker(self.ticker)

    def to_json(self) -> dict[str, Any]:
        return {
            "ticker": self.ticker,
            "event_time": self.time_text,
            "price": self.price,
            "volume": self.volume,
            "source": self.source,
        }


def company_of_ticker(ticker: str) -> str:
    """The batch table's company_name of a ticker (`AAPL` -> `aapl`, as batch/selection.py names companies)."""
    return ticker.lower()


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


def normalize_ticker(raw: object) -> str:
    if not isinstance(raw, str) or not _TICKER.match(raw.strip().upper()):
        raise QuoteError(f"ticker {raw!r} is not a ticker (letters, digits, '.', '-'; at most 20)")
    return raw.strip().upper()


def parse_time(raw: object) -> datetime:
    """An aware datetime from ISO 8601 text with an offset (or Z), or from epoch seconds (UTC by definition)."""
    if isinstance(raw, bool):
        raise QuoteError(f"event time {raw!r} is not a time")
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            raise QuoteError(f"event time {raw!r} is not a time")
        moment = datetime.fromtimestamp(raw, tz=timezone.utc)
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise QuoteError(f"event time {raw!r} is not ISO 8601") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise QuoteError(f"event time {raw!r} has no time zone: the exchange day would be a guess")
    else:
        raise QuoteError(f"event time {raw!r} is not a time")
    if moment < EARLIEST:
        raise QuoteError(f"event time {raw!r} is before {EARLIEST:%Y-%m}, the first month of the log")
    return moment


def parse_price(raw: object) -> float:
    if isinstance(raw, bool):
        raise QuoteError(f"price {raw!r} is not a number")
    try:
        price = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise QuoteError(f"price {raw!r} is not a number") from None
    if not math.isfinite(price) or price <= 0:
        raise QuoteError(f"price {raw!r} is not a positive number")
    return price


def parse_volume(raw: object) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise QuoteError(f"volume {raw!r} is not a whole number")
    try:
        volume = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise QuoteError(f"volume {raw!r} is not a whole number") from None
    if not math.isfinite(volume) or volume < 0 or volume != int(volume):
        raise QuoteError(f"volume {raw!r} is not a whole number >= 0")
    return int(volume)


def parse_source(raw: object, default: str) -> str:
    source = default if raw is None or raw == "" else raw
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise QuoteError(f"source {raw!r} is not a short name (letters, digits, '_.:/-')")
    return source


def quote_from_fields(fields: dict[str, Any], default_source: str) -> Quote:
    """A Quote from a decoded record; raises QuoteError naming the first bad field."""
    time_key = next((k for k in TIME_KEYS if k in fields), None)
    if time_key is None:
        raise QuoteError(f"no event time (one of {', '.join(TIME_KEYS)})")
    return Quote(
        ticker=normalize_ticker(fields.get("ticker")),
        event_time=parse_time(fields[time_key]),
        price=parse_price(fields.get("price")),
        volume=parse_volume(fields.get("volume")),
        source=parse_source(fields.get("source"), default_source),
    )


def parse_record(data: bytes, default_source: str = "kinesis") -> Quote:
    """A Quote from one stream record (a UTF-8 JSON object); raises QuoteError saying what is wrong."""
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise QuoteError(f"not a UTF-8 JSON object: {error}") from None
    if not isinstance(fields, dict):
        raise QuoteError("not a JSON object")
    return quote_from_fields(fields, default_source)


def dedupe(quotes: Iterable[Quote]) -> list[Quote]:
    """One quote per (ticker, event time), the first seen winning, ordered by (event time, ticker)."""
    unique: dict[tuple[str, str], Quote] = {}
    for quote in quotes:
        unique.setdefault(quote.key, quote)
    return sorted(unique.values(), key=lambda q: (q.time_text, q.ticker))


def month_of(moment: datetime, exchange_tz: str) -> str:
    """The monthly partition key (YYYYMM) of an instant: the month on the exchange's calendar."""
    return moment.astimezone(ZoneInfo(exchange_tz)).strftime("%Y%m")


def trading_day(moment: datetime, exchange_tz: str) -> date:
    """The exchange's calendar day of an instant (a quote at 20:30 New York time on the 31st is still the 31st)."""
    return moment.astimezone(ZoneInfo(exchange_tz)).date()


def group_by_month(quotes: Iterable[Quote], exchange_tz: str) -> dict[str, list[Quote]]:
    groups: dict[str, list[Quote]] = {}
    for quote in quotes:
        groups.setdefault(month_of(quote.event_time, exchange_tz), []).append(quote)
    return dict(sorted(groups.items()))


def encode_batch(quotes: Iterable[Quote], rejected: Iterable[dict[str, str]] = ()) -> bytes:
    """A staged batch as JSON: what the stream sensor hands its run (see sensors.py)."""
    body = {"quotes": [q.to_json() for q in quotes], "rejected": list(rejected)}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def decode_batch(data: bytes) -> tuple[list[Quote], list[dict[str, str]]]:
    body = json.loads(data.decode("utf-8"))
    quotes = [quote_from_fields(fields, "kinesis") for fields in body.get("quotes", [])]
    return quotes, list(body.get("rejected", []))
