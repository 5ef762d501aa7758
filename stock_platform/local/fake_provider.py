"""A local fake price API: Stooq's CSV, Yahoo's chart JSON and Alpha Vantage's CSV, with their bad answers.

Serves deterministic daily prices for any ticker (sample.py's random walk, seeded by the ticker) on every business
day up to `last_day`, in each provider's real shape: Stooq `Date,Open,High,Low,Close,Volume`; Yahoo chart JSON
(timestamps at the session open in UTC, the exchange's `gmtoffset`, null-able arrays, 404 with an error JSON for an
unknown symbol); Alpha Vantage `timestamp,open,high,low,close,volume`, newest first. Chosen tickers answer badly:

    html      HTTP 200 with an HTML challenge page          quota    HTTP 200 "Exceeded the daily hits limit"
    nodata    "No data" (Stooq), 404 error JSON (Yahoo), an "Error Message" JSON (Alpha Vantage)
    null      a null (empty field) in the newest row   throttle 429 + Retry-After on the first 2 requests
    flaky     HTTP 503 on the first 2 requests                error    HTTP 500 always

    python -m stock_platform.local.fake_provider --port 8765 --bad aapl=html --bad msft=quota
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import numpy as np

from stock_platform.local.loopback import LoopbackServer
from stock_platform.local.sample import company_csv

FIRST_DAY = date(2015, 1, 1)
EXCHANGE = ZoneInfo("America/New_York")
WARSAW = ZoneInfo("Europe/Warsaw")
CHALLENGE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>"
)
BAD_MODES = ("html", "quota", "nodata", "null", "throttle", "flaky", "error")
FAILING_ATTEMPTS = 2
Row = tuple[str, float, float, float, float, int]  # date, open, high, low, close, volume


@dataclass
class FakeProviderState:
    """What the server answers; tests change it while it runs (`set_close`, `bad`)."""

    last_day: date = field(default_factory=date.today)
    bad: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None  # when set, Stooq and Alpha Vantage refuse requests without it
    retry_after: int = 1
    requests: Counter[str] = field(default_factory=Counter)  # ticker -> requests
    _series: dict[str, dict[str, Row]] = field(default_factory=dict)
    _overrides: dict[tuple[str, str], Row] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def series(self, ticker: str) -> dict[str, Row]:
        with self._lock:
            if ticker not in self._series:
                rng = np.random.default_rng(zlib.crc32(ticker.encode()))
                days = int(np.busday_count(FIRST_DAY, self.last_day + timedelta(days=1)))
                text = company_csv(rng, max(days, 1), np.datetime64(FIRST_DAY)).decode()
                rows: dict[str, Row] = {}
                for line in text.splitlines()[1:]:
                    d, o, h, low, c, v, _ = line.split(",")
                    if d <= self.last_day.isoformat():
                        rows[d] = (d, float(o), float(h), float(low), float(c), int(v))
                self._series[ticker] = rows
            return {**self._series[ticker], **{d: r for (t, d), r in self._overrides.items() if t == ticker}}

    def rows(self, ticker: str, first: date, last: date) -> list[Row]:
        series = self.series(ticker)
        return [series[d] for d in sorted(series) if first.isoformat() <= d <= last.isoformat()]

    def set_close(self, ticker: str, day: str, close: float) -> None:
        """Correct a day's close (a provider's correction, as a later download sees it)."""
        d, o, h, low, _, v = self.series(ticker)[day]
        with self._lock:
            self._overrides[(ticker, day)] = (d, o, max(h, close), min(low, close), close, v)

    def count(self, ticker: str) -> int:
        with self._lock:
            self.requests[ticker] += 1
            return self.requests[ticker]


Answer = tuple[int, dict[str, str], bytes]


def _csv(header: str, rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    out.write(header + "\n")
    for row in rows:
        out.write(",".join("" if v is None else str(v) for v in row) + "\n")
    return out.getvalue().encode()


def _open_ts(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), time(9, 30), EXCHANGE).timestamp())


def _yahoo_error(status: int, code: str, description: str) -> Answer:
    body = {"chart": {"result": None, "error": {"code": code, "description": description}}}
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def answer(state: FakeProviderState, path: str, query: dict[str, str]) -> Answer:
    """The provider's answer to one request. Pure but for the state's request counts."""
    if path.startswith("/v8/finance/chart/"):
        provider, ticker = "yahoo", path.rsplit("/", 1)[-1].lower()
    elif path.startswith("/q/"):
        provider, ticker = "stooq", query.get("s", "").lower().removesuffix(".us")
    else:
        provider, ticker = "alphavantage", query.get("symbol", "").lower()
    mode = state.bad.get(ticker)
    refused = _bad_answer(state, provider, query, mode, state.count(ticker))
    if refused is not None:
        return refused
    if provider == "yahoo":
        return _yahoo(state, ticker, query, mode)
    if provider == "stooq":
        return _stooq(state, ticker, path, query, mode)
    return _alphavantage(state, ticker, query, mode)


def _bad_answer(
    state: FakeProviderState, provider: str, query: dict[str, str], mode: str | None, n: int
) -> Answer | None:
    """The chosen ticker's bad answer (`n`: its requests so far), or a refused key; None: answer normally."""
    text = {"Content-Type": "text/plain"}
    bad: Answer | None = None
    if mode == "throttle" and n <= FAILING_ATTEMPTS:
        bad = 429, {**text, "Retry-After": str(state.retry_after)}, b"Too Many Requests"
    elif (mode == "flaky" and n <= FAILING_ATTEMPTS) or mode == "error":
        bad = (503 if mode == "flaky" else 500), text, b"Service Unavailable"
    elif mode == "html":
        bad = 200, {"Content-Type": "text/html"}, CHALLENGE_PAGE
    elif mode == "quota":
        # Stooq says so with HTTP 200; Yahoo throttles for an hour.
        bad = (
            (200, text, b"Exceeded the daily hits limit")
            if provider != "yahoo"
            else (429, {**text, "Retry-After": "3600"}, b"Too Many Requests")
        )
    elif state.api_key and provider != "yahoo" and query.get("apikey") != state.api_key:
        bad = (
            (200, text, b"Get your apikey: visit the site to get one")
            if provider == "stooq"
            else (200, {"Content-Type": "application/json"}, b'{"Error Message": "the parameter apikey is invalid"}')
        )
    return bad


def _rows_or_none(state: FakeProviderState, ticker: str, first: date, last: date, mode: str | None) -> list[list[Any]]:
    rows: list[list[Any]] = [list(r) for r in state.rows(ticker, first, last)]
    if mode == "null" and rows:
        rows[-1][1] = None  # the newest day's Open is missing
    return rows


def _stooq(state: FakeProviderState, ticker: str, path: str, query: dict[str, str], mode: str | None) -> Answer:
    if mode == "nodata" or not ticker:
        return 200, {"Content-Type": "text/plain"}, b"No data"
    if path.startswith("/q/l/"):
        rows = state.rows(ticker, FIRST_DAY, state.last_day)
        d, o, h, low, c, v = rows[-1]
        when = datetime.combine(date.fromisoformat(d), time(16), EXCHANGE).astimezone(WARSAW)
        header = "Symbol,Date,Time,Open,High,Low,Close,Volume"
        return (
            200,
            {"Content-Type": "text/csv"},
            _csv(header, [[f"{ticker.upper()}.US", f"{when:%Y-%m-%d}", f"{when:%H:%M:%S}", o, h, low, c, v]]),
        )
    first = datetime.strptime(query.get("d1", "20150101"), "%Y%m%d").date()
    last = datetime.strptime(query.get("d2", f"{state.last_day:%Y%m%d}"), "%Y%m%d").date()
    rows_ = _rows_or_none(state, ticker, first, last, mode)
    if not rows_:
        return 200, {"Content-Type": "text/plain"}, b"No data"
    return 200, {"Content-Type": "text/csv"}, _csv("Date,Open,High,Low,Close,Volume", rows_)


def _yahoo(state: FakeProviderState, ticker: str, query: dict[str, str], mode: str | None) -> Answer:
    if mode == "nodata" or not ticker:
        return _yahoo_error(404, "Not Found", "No data found, symbol may be delisted")
    if "period1" in query:
        first = datetime.fromtimestamp(int(query["period1"]), timezone.utc).date()
        last = datetime.fromtimestamp(int(query.get("period2", "0")) - 1, timezone.utc).date()
    else:
        first = last = date.fromisoformat(max(state.series(ticker)))  # range=1d: the latest session
    rows = _rows_or_none(state, ticker, first, last, mode)
    latest = state.rows(ticker, FIRST_DAY, state.last_day)[-1]
    offset = int(datetime.now(EXCHANGE).utcoffset().total_seconds())  # type: ignore[union-attr]
    result = {
        "meta": {
            "currency": "USD",
            "symbol": ticker.upper(),
            "exchangeName": "NMS",
            "exchangeTimezoneName": "America/New_York",
            "gmtoffset": offset,
            "regularMarketPrice": widen(latest[4]),
            "regularMarketTime": _open_ts(latest[0]) + 6 * 3600 + 1800,
            "regularMarketVolume": latest[5],
        },
        "timestamp": [_open_ts(r[0]) for r in rows],
        "indicators": {
            "quote": [
                {
                    "open": [widen(r[1]) for r in rows],
                    "high": [widen(r[2]) for r in rows],
                    "low": [widen(r[3]) for r in rows],
                    "close": [widen(r[4]) for r in rows],
                    "volume": [r[5] for r in rows],
                }
            ]
        },
    }
    return (
        200,
        {"Content-Type": "application/json"},
        json.dumps({"chart": {"result": [result], "error": None}}).encode(),
    )


def widen(value: float | None) -> float | None:
    """Yahoo's JSON carries float32 prices widened to float64 (150.25 -> 150.25 exactly, 28.31 -> 28.30999946...)."""
    return None if value is None else float(np.float32(value))


def _alphavantage(state: FakeProviderState, ticker: str, query: dict[str, str], mode: str | None) -> Answer:
    if mode == "nodata" or not ticker:
        body = b'{"Error Message": "Invalid API call. Please retry or visit the documentation for TIME_SERIES_DAILY."}'
        return 200, {"Content-Type": "application/json"}, body
    if query.get("function") == "GLOBAL_QUOTE":
        rows = state.rows(ticker, FIRST_DAY, state.last_day)
        (d, o, h, low, c, v), previous = rows[-1], rows[-2][4] if len(rows) > 1 else rows[-1][4]
        header = "symbol,open,high,low,price,volume,latestDay,previousClose,change,changePercent"
        change = round(c - previous, 4)
        return (
            200,
            {"Content-Type": "text/csv"},
            _csv(header, [[ticker.upper(), o, h, low, c, v, d, previous, change, f"{change / previous * 100:.4f}%"]]),
        )
    first = FIRST_DAY if query.get("outputsize") == "full" else state.last_day - timedelta(days=150)
    rows_ = _rows_or_none(state, ticker, first, state.last_day, mode)
    return 200, {"Content-Type": "text/csv"}, _csv("timestamp,open,high,low,close,volume", rows_[::-1])


class FakeProvider:
    """A running fake: `.base_url`, `.state` (change answers while it runs), `.stop()`."""

    def __init__(self, state: FakeProviderState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                status, headers, body = answer(fake.state, url.path, query)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = LoopbackServer((host, port), Handler)
        self.base_url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-price-provider", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_fake_provider(
    bad: dict[str, str] | None = None,
    last_day: date | None = None,
    port: int = 0,
    api_key: str | None = None,
    retry_after: int = 1,
) -> FakeProvider:
    """Start the fake on 127.0.0.1 (`port` 0: any free port); serves until `.stop()`."""
    unknown = {t: m for t, m in (bad or {}).items() if m not in BAD_MODES}
    if unknown:
        raise ValueError(f"Unknown bad-answer modes {unknown}: expected one of {', '.join(BAD_MODES)}")
    state = FakeProviderState(
        last_day=last_day or date.today(),
        bad={t.lower(): m for t, m in (bad or {}).items()},
        api_key=api_key,
        retry_after=retry_after,
    )
    return FakeProvider(state, port=port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve fake Stooq / Yahoo / Alpha Vantage daily prices locally.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--bad", action="append", default=[], metavar="TICKER=MODE", help=", ".join(BAD_MODES))
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    bad = dict(item.split("=", 1) for item in args.bad)
    provider = start_fake_provider(bad=bad, port=args.port, api_key=args.api_key)
    print(f"Fake price provider at {provider.base_url} (bad answers: {bad or 'none'}); Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
