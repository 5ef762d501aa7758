"""The price client's politeness: the rate limit, Retry-After, and retries with backoff, with a recorded sleep
(the delays the client asks for are asserted, never the wall clock)."""

from datetime import date

import pytest

from stock_platform.downloads.fetching import PriceClient, RateLimiter
from stock_platform.downloads.providers import PriceRows, Provider, Unavailable
from stock_platform.resources.price_source import PriceSource, PriceUnavailableError

STOOQ_OK = b"Date,Open,High,Low,Close,Volume\n2026-01-05,10,11,9,10.5,100\n"
DAY = date(2026, 1, 5)


class ScriptedClient(PriceClient):
    """Answers from a script instead of HTTP: one (status, headers, body) per request."""

    script: list[tuple[int, dict[str, str], bytes]]

    def _request(self, url: str) -> tuple[int, dict[str, str], bytes]:
        self.requests += 1
        return self.script.pop(0)


def scripted(*answers, **kwargs) -> tuple[ScriptedClient, list[float]]:
    sleeps: list[float] = []
    client = ScriptedClient(Provider.STOOQ, "http://fake", requests_per_second=0, sleep=sleeps.append, **kwargs)
    client.script = list(answers)
    return client, sleeps


def test_429_waits_at_least_retry_after_then_succeeds() -> None:
    client, sleeps = scripted((429, {"Retry-After": "3"}, b"slow down"), (200, {}, STOOQ_OK))
    assert isinstance(client.fetch_daily("aapl", DAY, DAY), PriceRows)
    assert client.requests == 2 and sleeps == [pytest.approx(3.0, abs=0.05)]


def test_a_retry_after_longer_than_the_cap_fails_the_ticker_at_once() -> None:
    client, sleeps = scripted((429, {"Retry-After": "3600"}, b"quota"), (200, {}, STOOQ_OK))
    verdict = client.fetch_daily("aapl", DAY, DAY)
    assert isinstance(verdict, Unavailable) and "asks to wait 3600 s" in verdict.reason
    assert client.requests == 1 and sleeps == []


def test_transient_errors_back_off_exponentially_then_give_up_with_the_reason() -> None:
    client, sleeps = scripted(*[(503, {}, b"busy")] * 4, max_attempts=4, backoff_seconds=1.0)
    verdict = client.fetch_daily("aapl", DAY, DAY)
    assert isinstance(verdict, Unavailable) and verdict.reason == "provider error (HTTP 503), after 4 attempts"
    assert client.requests == 4 and len(sleeps) == 3
    # Jittered in [0.5, 1] x 1, 2, 4 seconds.
    for slept, base in zip(sleeps, (1.0, 2.0, 4.0), strict=True):
        assert base * 0.5 <= slept <= base


def test_a_network_error_is_retried() -> None:
    client, _ = scripted((0, {}, b"network error: connection refused"), (200, {}, STOOQ_OK))
    assert isinstance(client.fetch_daily("aapl", DAY, DAY), PriceRows)


def test_a_bad_answer_with_http_200_is_not_retried() -> None:
    client, sleeps = scripted((200, {}, b"Exceeded the daily hits limit"), (200, {}, STOOQ_OK))
    verdict = client.fetch_daily("aapl", DAY, DAY)
    assert isinstance(verdict, Unavailable) and client.requests == 1 and sleeps == []


def test_the_rate_limiter_spaces_request_starts_evenly() -> None:
    sleeps: list[float] = []
    limiter = RateLimiter(per_second=10, sleep=sleeps.append)
    for _ in range(5):
        limiter.acquire()
    assert sleeps == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.05)


def test_a_pause_holds_every_later_request() -> None:
    sleeps: list[float] = []
    limiter = RateLimiter(per_second=0, sleep=sleeps.append)
    limiter.pause(5.0)
    limiter.acquire()
    assert sleeps == pytest.approx([5.0], abs=0.05)


def test_the_resource_names_the_provider_and_refuses_unknown_ones() -> None:
    with pytest.raises(ValueError, match="Unknown price provider 'bloomberg'"):
        PriceSource(provider="bloomberg").client()
    with pytest.raises(ValueError, match="must be http"):
        PriceSource(provider="stooq", base_url="file:///etc/passwd").client()
    assert PriceSource(provider="Stooq").client().base_url == "https://stooq.com"


def test_fetch_latest_raises_with_the_reason_when_there_is_no_price() -> None:
    source = PriceSource(provider="stooq", base_url="http://127.0.0.1:9", max_attempts=1, timeout_seconds=2)
    with pytest.raises(PriceUnavailableError, match="No latest price for aapl from stooq: network error"):
        source.fetch_latest("aapl")
