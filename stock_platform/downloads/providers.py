"""The price APIs' shapes: how to ask each provider, and what its answer means. Pure: no HTTP, no Dagster.

Every answer is judged by its content, never by its status code alone: Stooq answers scripts with HTTP 200 and an
HTML challenge page, `Exceeded the daily hits limit` or `No data`; Alpha Vantage with HTTP 200 and a JSON note; Yahoo
with JSON whose price arrays may hold nulls. Anything that is not price data is `Unavailable` with the reason, and
is never written anywhere. A null inside a row becomes an empty field, so the batch's row rules reject that row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

# Date, Open, High, Low, Close, Volume as text; "" where the provider sent nothing (a null).
RawRow = tuple[str, str, str, str, str, str]

EXCHANGE_TZ = ZoneInfo("America/New_York")
# Stooq states quote times in Warsaw time.
STOOQ_TZ = ZoneInfo("Europe/Warsaw")
# Alpha Vantage's free daily series holds the latest 100 trading days ("compact"); older ones need "full".
COMPACT_DAYS = 100
_SNIPPET = 80


class Provider(str, Enum):
    STOOQ = "stooq"
    YAHOO = "yahoo"
    ALPHAVANTAGE = "alphavantage"


DEFAULT_BASE_URLS = {
    Provider.STOOQ: "https://stooq.com",
    Provider.YAHOO: "https://query1.finance.yahoo.com",
    Provider.ALPHAVANTAGE: "https://www.alphavantage.co",
}


@dataclass(frozen=True)
class PriceRows:
    """Price data: the rows the provider sent for the range asked, oldest first."""

    rows: tuple[RawRow, ...]


@dataclass(frozen=True)
class Unavailable:
    """Not price data, with the reason a person reads; `retryable` answers are asked again with backoff."""

    reason: str
    retryable: bool = False
    retry_after: float | None = None  # seconds, from a 429's Retry-After


Answer = PriceRows | Unavailable


@dataclass(frozen=True)
class Quote:
    """The latest price a provider reports for one ticker."""

    time: datetime  # tz-aware
    price: float
    volume: int | None


def symbol(provider: Provider, ticker: str) -> str:
    """The provider's symbol for a watchlist ticker (`aapl`, `brk-b`): Stooq wants `aapl.us`, the others `AAPL`."""
    if provider is Provider.STOOQ:
        return f"{ticker.lower()}.us"
    return ticker.upper()


def daily_url(provider: Provider, base_url: str, ticker: str, first: date, last: date, api_key: str | None) -> str:
    """One request for the ticker's daily prices from `first` to `last`, both included."""
    base = base_url.rstrip("/")
    sym = symbol(provider, ticker)
    if provider is Provider.STOOQ:
        params = {"s": sym, "i": "d", "d1": f"{first:%Y%m%d}", "d2": f"{last:%Y%m%d}"}
        if api_key:
            params["apikey"] = api_key
        return f"{base}/q/d/l/?{urlencode(params)}"
    if provider is Provider.YAHOO:
        # period2 is exclusive: midnight UTC after the last day still covers a US session (it closes 21:00 UTC).
        start = int(datetime.combine(first, time(), timezone.utc).timestamp())
        end = int(datetime.combine(last + timedelta(days=1), time(), timezone.utc).timestamp())
        return f"{base}/v8/finance/chart/{sym}?{urlencode({'period1': start, 'period2': end, 'interval': '1d'})}"
    size = "compact" if (date.today() - first).days <= COMPACT_DAYS else "full"
    params = {"function": "TIME_SERIES_DAILY", "symbol": sym, "outputsize": size, "datatype": "csv"}
    return f"{base}/query?{urlencode({**params, 'apikey': api_key or ''})}"


def latest_url(provider: Provider, base_url: str, ticker: str, api_key: str | None) -> str:
    base = base_url.rstrip("/")
    sym = symbol(provider, ticker)
    if provider is Provider.STOOQ:
        params = {"s": sym, "f": "sd2t2ohlcv", "h": "", "e": "csv"}
        if api_key:
            params["apikey"] = api_key
        return f"{base}/q/l/?{urlencode(params)}"
    if provider is Provider.YAHOO:
        return f"{base}/v8/finance/chart/{sym}?{urlencode({'range': '1d', 'interval': '1d'})}"
    params = {"function": "GLOBAL_QUOTE", "symbol": sym, "datatype": "csv", "apikey": api_key or ""}
    return f"{base}/query?{urlencode(params)}"


def judge_status(status: int, headers: Mapping[str, str], body: bytes) -> Unavailable | None:
    """What the status code alone settles: throttling and server errors are retried, a 4xx is final. None: read
    the body (a 200, or Yahoo's 404 whose error JSON names the problem)."""
    if status == 429:
        return Unavailable("rate limited (HTTP 429)", retryable=True, retry_after=retry_after(headers))
    if status >= 500:
        return Unavailable(f"provider error (HTTP {status})", retryable=True)
    if status == 200 or (status == 404 and body.lstrip().startswith(b"{")):
        return None
    return Unavailable(f"HTTP {status}: {snippet(body)}")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (the delta form; an HTTP date is rare from these APIs and is treated as absent)."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except ValueError:
                return None
    return None


def parse_daily(provider: Provider, body: bytes, first: date, last: date) -> Answer:
    """The rows from `first` to `last`, or why the body is not price data."""
    if provider is Provider.YAHOO:
        return _yahoo_daily(body, first, last)
    refused = _not_csv(body)
    if refused is not None:
        return refused
    rows = _csv_rows(body.decode("utf-8", errors="replace"))
    if rows is None:
        return Unavailable(f"not price data: {snippet(body)}")
    # Alpha Vantage sends newest first and its whole compact/full series: keep the range, oldest first.
    kept = sorted((r for r in rows if first.isoformat() <= r[0].strip() <= last.isoformat()), key=lambda r: r[0])
    return PriceRows(tuple(kept))


def parse_latest(provider: Provider, body: bytes) -> Quote | Unavailable:
    """The latest quote in the body, or why there is none."""
    if provider is Provider.YAHOO:
        return _yahoo_latest(body)
    refused = _not_csv(body)
    if refused is not None:
        return refused
    records = list(csv.DictReader(io.StringIO(body.decode("utf-8", errors="replace"))))
    record = {k.strip().lower(): (v or "").strip() for k, v in (records[0] if records else {}).items() if k}
    try:
        if provider is Provider.STOOQ:
            when = datetime.fromisoformat(f"{record['date']}T{record['time']}").replace(tzinfo=STOOQ_TZ)
            return Quote(when, float(record["close"]), _int_or_none(record.get("volume")))
        # GLOBAL_QUOTE gives the trading day only: the quote stands as of that day's close.
        when = datetime.combine(date.fromisoformat(record["latestday"]), time(16), EXCHANGE_TZ)
        return Quote(when, float(record["price"]), _int_or_none(record.get("volume")))
    except (KeyError, ValueError):
        return Unavailable(f"no quote for the ticker: {snippet(body)}")


def _yahoo_latest(body: bytes) -> Quote | Unavailable:
    result = _yahoo_result(_json(body))
    if isinstance(result, Unavailable):
        return result
    meta = result.get("meta") or {}
    price, stamp = meta.get("regularMarketPrice"), meta.get("regularMarketTime")
    if not isinstance(price, int | float) or not isinstance(stamp, int):
        return Unavailable("no regularMarketPrice/regularMarketTime in the answer")
    return Quote(
        datetime.fromtimestamp(stamp, timezone.utc),
        round(float(price), 4),
        _int_or_none(meta.get("regularMarketVolume")),
    )


def snippet(body: bytes) -> str:
    """The start of a body, on one line, for a reason a person reads."""
    text = " ".join(body[:400].decode("utf-8", errors="replace").split())
    return text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "") if text else "(empty body)"


def _not_csv(body: bytes) -> Unavailable | None:
    """The non-data answers a CSV endpoint sends with HTTP 200."""
    text = body[:2000].decode("utf-8", errors="replace").strip()
    lowered = text.lower()
    reason = None
    if not text:
        reason = "empty answer"
    elif lowered.startswith("<") or "<html" in lowered:
        reason = "an HTML page instead of prices (a challenge or error page)"
    elif "exceeded the daily hits limit" in lowered:
        reason = "quota exceeded: Exceeded the daily hits limit"
    elif lowered.startswith("no data") or lowered == "n/d":
        reason = "no data for this ticker and range"
    elif text.startswith("{"):
        return _json_note(body)
    return Unavailable(reason) if reason else None


def _json_note(body: bytes) -> Unavailable:
    """Alpha Vantage's JSON instead of CSV: an error, a rate-limit note, or a key/premium notice."""
    document = _json(body)
    if isinstance(document, dict):
        for key in ("Error Message", "Note", "Information"):
            if key in document:
                return Unavailable(f"{key}: {str(document[key])[: _SNIPPET * 2]}")
    return document if isinstance(document, Unavailable) else Unavailable(f"JSON instead of prices: {snippet(body)}")


def _csv_rows(text: str) -> list[RawRow] | None:
    """Rows by header name (Stooq: Date..Volume; Alpha Vantage: timestamp..volume); None without such a header."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [name.strip().lower() for name in next(reader, [])]
    names = {"date" if n == "timestamp" else n: i for i, n in enumerate(header)}
    wanted = ("date", "open", "high", "low", "close", "volume")
    if any(name not in names for name in wanted):
        return None
    rows: list[RawRow] = []
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        values = [fields[names[n]].strip() if names[n] < len(fields) else "" for n in wanted]
        rows.append((values[0], values[1], values[2], values[3], values[4], values[5]))
    return rows


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return Unavailable(f"not JSON: {snippet(body)}")


def _yahoo_result(document: Any) -> dict[str, Any] | Unavailable:
    if isinstance(document, Unavailable):
        return document
    chart = document.get("chart") if isinstance(document, dict) else None
    if not isinstance(chart, dict):
        return Unavailable(f"not a chart answer: {snippet(json.dumps(document).encode())}")
    error = chart.get("error")
    if error:
        description = error.get("description") if isinstance(error, dict) else str(error)
        return Unavailable(f"provider error: {description}")
    results = chart.get("result") or []
    if not results or not isinstance(results[0], dict):
        return Unavailable("no data for this ticker and range")
    first: dict[str, Any] = results[0]
    return first


def _yahoo_daily(body: bytes, first: date, last: date) -> Answer:
    if body.lstrip()[:1] == b"<":
        return Unavailable("an HTML page instead of prices (a challenge or error page)")
    result = _yahoo_result(_json(body))
    if isinstance(result, Unavailable):
        return result
    stamps = result.get("timestamp") or []
    quotes = ((result.get("indicators") or {}).get("quote") or [{}])[0] or {}
    # A day's timestamp is the session's open in UTC; the exchange's offset gives the trading day it belongs to.
    offset = timedelta(seconds=int((result.get("meta") or {}).get("gmtoffset") or 0))
    rows: list[RawRow] = []
    for i, stamp in enumerate(stamps):
        day = (datetime.fromtimestamp(int(stamp), timezone.utc) + offset).date()
        if not first <= day <= last:
            continue
        o, h, lo, c = (_yahoo_value(quotes.get(name), i) for name in ("open", "high", "low", "close"))
        rows.append((day.isoformat(), o, h, lo, c, _yahoo_value(quotes.get("volume"), i, integer=True)))
    return PriceRows(tuple(sorted(rows)))


def _yahoo_value(series: Any, i: int, integer: bool = False) -> str:
    value = series[i] if isinstance(series, list) and i < len(series) else None
    if value is None:
        return ""  # a null: the row rules reject the row for it
    if integer:
        return str(int(value))
    # The chart API widens 4-decimal prices to float32 noise (150.24999237060547): Kaggle's layout has 4 decimals.
    return repr(round(float(value), 4))


def _int_or_none(value: Any) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
