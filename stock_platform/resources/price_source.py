"""The price source: which provider the platform downloads prices from, and how politely it asks.

Bound to environment variables in stock_platform/downloads/settings.py (the API key only through `dg.EnvVar`). The
HTTP work is stock_platform/downloads/fetching.py's Dagster-free client, shared with the AWS Lambda handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import dagster as dg
from pydantic import Field, PrivateAttr

from stock_platform.downloads.fetching import PriceClient
from stock_platform.downloads.providers import DEFAULT_BASE_URLS, Answer, Provider, Unavailable


class PriceUnavailableError(RuntimeError):
    """The provider gave no usable price; the message says why (quota, HTML page, no data, HTTP error...)."""


@dataclass(frozen=True)
class LatestPrice:
    ticker: str
    time: datetime  # tz-aware
    price: float
    volume: int | None
    source: str  # the provider's name


class PriceSource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Daily and latest prices from Stooq, Yahoo's chart API or Alpha Vantage, rate-limited and retried."""

    provider: str = Field(default=Provider.YAHOO.value, description="stooq, yahoo or alphavantage.")
    base_url: str = Field(default="", description="The provider's base URL; empty: the provider's public one.")
    api_key: str = Field(default="", description="API key (Stooq and Alpha Vantage need one); bind with dg.EnvVar.")
    requests_per_second: float = Field(default=2.0, description="Most requests started per second, all threads.")
    max_attempts: int = Field(default=4, description="Attempts per request for 429s and transient errors.")
    timeout_seconds: float = Field(default=20.0, description="Connect and read timeout of one request.")
    backoff_seconds: float = Field(default=0.5, description="First retry delay; doubles per attempt, jittered.")

    _client: PriceClient | None = PrivateAttr(default=None)

    @property
    def provider_kind(self) -> Provider:
        try:
            return Provider(self.provider.strip().lower())
        except ValueError:
            names = ", ".join(p.value for p in Provider)
            raise ValueError(f"Unknown price provider {self.provider!r}: expected one of {names}") from None

    def client(self) -> PriceClient:
        """One client per resource instance, so its rate limit holds across the run's threads."""
        if self._client is None:
            base_url = self.base_url or DEFAULT_BASE_URLS[self.provider_kind]
            if not base_url.startswith(("http://", "https://")):
                raise ValueError(f"The price source's base URL must be http(s): {base_url!r}")
            self._client = PriceClient(
                provider=self.provider_kind,
                base_url=base_url,
                api_key=self.api_key or None,
                requests_per_second=self.requests_per_second,
                max_attempts=self.max_attempts,
                timeout_seconds=self.timeout_seconds,
                backoff_seconds=self.backoff_seconds,
            )
        return self._client

    def fetch_daily(self, ticker: str, first: date, last: date) -> Answer:
        """The ticker's daily rows from `first` to `last` (one request), or `Unavailable` with the reason."""
        return self.client().fetch_daily(ticker, first, last)

    def fetch_latest(self, ticker: str) -> LatestPrice:
        """The ticker's latest price; raises PriceUnavailableError with the provider's reason when there is none."""
        quote = self.client().fetch_quote(ticker)
        if isinstance(quote, Unavailable):
            raise PriceUnavailableError(f"No latest price for {ticker} from {self.provider_kind.value}: {quote.reason}")
        return LatestPrice(ticker, quote.time, quote.price, quote.volume, self.provider_kind.value)
