"""HTTP to a price provider: a shared rate limit, Retry-After honoured, transient errors retried with backoff.

Dagster-free (stdlib urllib only), so the same client runs in a Dagster step and in the AWS Lambda handler.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from stock_platform.downloads.providers import (
    Answer,
    Provider,
    Quote,
    Unavailable,
    daily_url,
    judge_status,
    latest_url,
    parse_daily,
    parse_latest,
)

T = TypeVar("T")
USER_AGENT = "stock_platform-downloader/1.0"
MAX_BACKOFF_SECONDS = 30.0


class RateLimiter:
    """At most `per_second` request starts per second across threads, spaced evenly (no bursts), and a pause for
    everyone when the provider says Retry-After."""

    def __init__(self, per_second: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


@dataclass
class PriceClient:
    provider: Provider
    base_url: str
    api_key: str | None = None
    requests_per_second: float = 2.0
    max_attempts: int = 4
    timeout_seconds: float = 20.0
    backoff_seconds: float = 0.5
    max_retry_after_seconds: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    limiter: RateLimiter = field(init=False)
    requests: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.requests_per_second, self.sleep)
        self._count_lock = threading.Lock()

    def fetch_daily(self, ticker: str, first: date, last: date) -> Answer:
        """The ticker's rows from `first` to `last` in one request (retried), or why there are none."""
        url = daily_url(self.provider, self.base_url, ticker, first, last, self.api_key)
        return self._get(url, lambda body: parse_daily(self.provider, body, first, last))

    def fetch_quote(self, ticker: str) -> Quote | Unavailable:
        url = latest_url(self.provider, self.base_url, ticker, self.api_key)
        return self._get(url, lambda body: parse_latest(self.provider, body))

    def _get(self, url: str, parse: Callable[[bytes], T | Unavailable]) -> T | Unavailable:
        outcome: T | Unavailable = Unavailable("not asked")
        for attempt in range(1, max(self.max_attempts, 1) + 1):
            self.limiter.acquire()
            status, headers, body = self._request(url)
            refused = judge_status(status, headers, body) if status else Unavailable(body.decode(), retryable=True)
            outcome = refused if refused is not None else parse(body)
            if not (isinstance(outcome, Unavailable) and outcome.retryable) or attempt == self.max_attempts:
                break
            if outcome.retry_after is not None and outcome.retry_after > self.max_retry_after_seconds:
                # A quota reset hours away: waiting would hold the whole run; the ticker fails with the reason.
                return Unavailable(f"{outcome.reason}; the provider asks to wait {outcome.retry_after:.0f} s")
            delay = min(self.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)
            if outcome.retry_after is not None:
                # The provider throttles the key, not the request: every thread waits, in the limiter's acquire.
                self.limiter.pause(max(delay, outcome.retry_after))
            else:
                self.sleep(delay)
        if isinstance(outcome, Unavailable) and outcome.retryable:
            return Unavailable(f"{outcome.reason}, after {self.max_attempts} attempts")
        return outcome

    def _request(self, url: str) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body); status 0 with the error as body when no HTTP answer came back."""
        with self._count_lock:
            self.requests += 1
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return int(response.status), dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), dict(error.headers.items()) if error.headers else {}, error.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            return 0, {}, f"network error: {reason}".encode()
