"""Every provider shape and every bad answer, judged by content: price rows, or a reason and nothing written."""

import json
from datetime import date, datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from stock_platform.downloads.providers import (
    PriceRows,
    Provider,
    Quote,
    Unavailable,
    daily_url,
    judge_status,
    parse_daily,
    parse_latest,
)
from stock_platform.local.fake_provider import FakeProviderState, answer

FIRST, LAST = date(2026, 1, 5), date(2026, 1, 9)

STOOQ = b"Date,Open,High,Low,Close,Volume\n2026-01-05,10.5,11,10,10.75,1200\n2026-01-06,10.8,11.2,10.6,11.1,900\n"
ALPHA = (
    b"timestamp,open,high,low,close,volume\n"
    b"2026-01-06,10.8,11.2,10.6,11.1,900\n2026-01-05,10.5,11,10,10.75,1200\n2025-12-31,9,9,9,9,5\n"
)
# Yahoo's chart JSON: session opens in UTC (14:30Z = 09:30 New York), float32-widened prices, a null in a row.
YAHOO = json.dumps(
    {
        "chart": {
            "result": [
                {
                    "meta": {
                        "gmtoffset": -18000,
                        "regularMarketPrice": 11.100000381469727,
                        "regularMarketTime": 1767733200,
                    },
                    "timestamp": [1767623400, 1767709800],
                    "indicators": {
                        "quote": [
                            {
                                "open": [10.5, 10.800000190734863],
                                "high": [11.0, 11.199999809265137],
                                "low": [10.0, None],
                                "close": [10.75, 11.100000381469727],
                                "volume": [1200, 900],
                            }
                        ]
                    },
                }
            ],
            "error": None,
        }
    }
).encode()
EXPECTED = (
    ("2026-01-05", "10.5", "11", "10", "10.75", "1200"),
    ("2026-01-06", "10.8", "11.2", "10.6", "11.1", "900"),
)


@pytest.mark.parametrize(
    ("provider", "body", "expected"),
    [
        (Provider.STOOQ, STOOQ, EXPECTED),
        (Provider.ALPHAVANTAGE, ALPHA, EXPECTED),  # newest first, and days outside the range, in the answer
        (
            Provider.YAHOO,
            YAHOO,
            (
                ("2026-01-05", "10.5", "11.0", "10.0", "10.75", "1200"),
                ("2026-01-06", "10.8", "11.2", "", "11.1", "900"),  # the null stays empty: the row rules reject it
            ),
        ),
    ],
)
def test_each_provider_s_prices_become_rows_oldest_first(provider, body, expected) -> None:
    assert parse_daily(provider, body, FIRST, LAST) == PriceRows(expected)


HTML = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>"


@pytest.mark.parametrize(
    ("provider", "status", "body", "reason"),
    [
        (Provider.STOOQ, 200, HTML, "an HTML page instead of prices"),
        (Provider.STOOQ, 200, b"Exceeded the daily hits limit", "quota exceeded"),
        (Provider.STOOQ, 200, b"No data", "no data for this ticker and range"),
        (Provider.STOOQ, 200, b"", "empty answer"),
        (Provider.STOOQ, 200, b"Symbol,Name\nAAPL,Apple\n", "not price data"),
        (
            Provider.ALPHAVANTAGE,
            200,
            b'{"Note": "Thank you for using Alpha Vantage! call frequency is 5 per minute"}',
            "Note: Thank you",
        ),
        (Provider.ALPHAVANTAGE, 200, b'{"Information": "premium endpoint"}', "Information: premium endpoint"),
        (Provider.ALPHAVANTAGE, 200, b'{"Error Message": "Invalid API call."}', "Error Message: Invalid API call."),
        (Provider.ALPHAVANTAGE, 200, HTML, "an HTML page"),
        (Provider.YAHOO, 200, HTML, "an HTML page"),
        (Provider.YAHOO, 200, b"not json", "not JSON"),
        (
            Provider.YAHOO,
            404,
            b'{"chart":{"result":null,"error":{"code":"Not Found",'
            b'"description":"No data found, symbol may be delisted"}}}',
            "provider error: No data found, symbol may be delisted",
        ),
        (Provider.YAHOO, 200, b'{"chart":{"result":[],"error":null}}', "no data for this ticker and range"),
    ],
)
def test_a_bad_answer_is_unavailable_with_its_reason(provider, status, body, reason) -> None:
    verdict = judge_status(status, {}, body) or parse_daily(provider, body, FIRST, LAST)
    assert isinstance(verdict, Unavailable) and reason in verdict.reason and not verdict.retryable


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [
        (429, {"Retry-After": "7"}, True, 7.0),
        (429, {"retry-after": "soon"}, True, None),
        (503, {}, True, None),
        (500, {}, True, None),
        (401, {}, False, None),
        (404, {}, False, None),  # a 404 without an error JSON
    ],
)
def test_the_status_alone_settles_throttling_and_errors(status, headers, retryable, retry_after) -> None:
    verdict = judge_status(status, headers, b"Too Many Requests")
    assert verdict is not None and verdict.retryable is retryable and verdict.retry_after == retry_after


@pytest.mark.parametrize("provider", list(Provider))
@pytest.mark.parametrize("mode", ["html", "quota", "nodata", "null", None])
def test_the_fake_provider_serves_each_shape_the_parsers_read(provider, mode) -> None:
    state = FakeProviderState(last_day=LAST, bad={"tick": mode} if mode else {})
    url = urlparse(daily_url(provider, "http://fake", "tick", FIRST, LAST, "key"))
    status, headers, body = answer(state, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()})
    verdict = judge_status(status, headers, body) or parse_daily(provider, body, FIRST, LAST)
    if mode in (None, "null"):
        assert isinstance(verdict, PriceRows) and [r[0] for r in verdict.rows] == [
            "2026-01-05",
            "2026-01-06",
            "2026-01-07",
            "2026-01-08",
            "2026-01-09",
        ]
        assert (verdict.rows[-1][1] == "") is (mode == "null")
        assert [r[1:] for r in verdict.rows[:-1]] == [
            (f"{r[1]}", f"{r[2]}", f"{r[3]}", f"{r[4]}", f"{r[5]}") for r in state.rows("tick", FIRST, LAST)[:-1]
        ]
    else:
        assert isinstance(verdict, Unavailable)


@pytest.mark.parametrize(
    ("provider", "body", "expected"),
    [
        (Provider.YAHOO, YAHOO, Quote(datetime(2026, 1, 6, 21, 0, tzinfo=timezone.utc), 11.1, None)),
        (
            Provider.STOOQ,
            b"Symbol,Date,Time,Open,High,Low,Close,Volume\nAAPL.US,2026-01-06,22:00:00,10.8,11.2,10.6,11.1,900\n",
            Quote(datetime(2026, 1, 6, 21, 0, tzinfo=timezone.utc), 11.1, 900),
        ),
        (
            Provider.ALPHAVANTAGE,
            b"symbol,open,high,low,price,volume,latestDay,previousClose,change,changePercent\n"
            b"AAPL,10.8,11.2,10.6,11.1,900,2026-01-06,10.75,0.35,3.2558%\n",
            Quote(datetime(2026, 1, 6, 21, 0, tzinfo=timezone.utc), 11.1, 900),
        ),
    ],
)
def test_latest_quotes_are_tz_aware_prices(provider, body, expected) -> None:
    quote = parse_latest(provider, body)
    assert isinstance(quote, Quote) and quote.time.tzinfo is not None
    assert (quote.time, quote.price, quote.volume) == (expected.time, expected.price, expected.volume)


@pytest.mark.parametrize(
    "body", [b"Symbol,Date,Time,Open,High,Low,Close,Volume\nX.US,N/D,N/D,N/D,N/D,N/D,N/D,N/D\n", b"No data"]
)
def test_a_missing_stooq_quote_is_unavailable(body) -> None:
    assert isinstance(parse_latest(Provider.STOOQ, body), Unavailable)
