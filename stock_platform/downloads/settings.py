"""The download domain's environment variables, read when the code location loads (never at import time).

The price source's API key is bound only through `dg.EnvVar`; the AWS Lambda form reads the same variables from
the function's environment (`price_client_from_environment`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from stock_platform.downloads.fetching import PriceClient
from stock_platform.resources.price_source import PriceSource
from stock_platform.settings import flag, optional_env
from stock_platform.trading_days import CLOSED_DAYS, parse_closed_days

PROVIDER = "STOCK_PLATFORM_PRICE_PROVIDER"
BASE_URL = "STOCK_PLATFORM_PRICE_BASE_URL"
API_KEY = "STOCK_PLATFORM_PRICE_API_KEY"
REQUESTS_PER_SECOND = "STOCK_PLATFORM_PRICE_REQUESTS_PER_SECOND"
MAX_ATTEMPTS = "STOCK_PLATFORM_PRICE_MAX_ATTEMPTS"
TIMEOUT_SECONDS = "STOCK_PLATFORM_PRICE_TIMEOUT_SECONDS"
TICKERS = "STOCK_PLATFORM_DOWNLOAD_TICKERS"
START_DATE = "STOCK_PLATFORM_DOWNLOAD_START_DATE"
SCHEDULE_CRON = "STOCK_PLATFORM_DOWNLOAD_SCHEDULE"
TIMEZONE = "STOCK_PLATFORM_DOWNLOAD_TIMEZONE"
SCHEDULE_ENABLED = "STOCK_PLATFORM_DOWNLOAD_SCHEDULE_ENABLED"
ERROR_AFTER_DAYS = "STOCK_PLATFORM_DOWNLOAD_ERROR_AFTER_DAYS"
CONCURRENCY = "STOCK_PLATFORM_DOWNLOAD_CONCURRENCY"
RAW_PREFIX = "STOCK_PLATFORM_DOWNLOAD_RAW_PREFIX"
LAMBDA_FUNCTION = "STOCK_PLATFORM_DOWNLOAD_LAMBDA_FUNCTION"
LAMBDA_REGION = "STOCK_PLATFORM_DOWNLOAD_LAMBDA_REGION"

DEFAULT_SCHEDULE = "30 18 * * 1-5"  # 18:30 on weekdays, after the close and the providers' end-of-day update
DEFAULT_TIMEZONE = "America/New_York"
DEFAULT_START_DATE = "2025-01-01"


def parse_tickers(value: str | None) -> tuple[str, ...] | None:
    """`aapl, MSFT ge` -> ("aapl", "msft", "ge"); None (the company list) when unset or blank."""
    if value is None:
        return None
    tickers = tuple(dict.fromkeys(t.strip().lower() for t in value.replace(",", " ").split() if t.strip()))
    return tickers or None


@dataclass(frozen=True)
class DownloadSettings:
    tickers: tuple[str, ...] | None
    start_date: str
    schedule_cron: str
    timezone: str
    schedule_enabled: bool
    error_after_days: int
    concurrency: int
    raw_prefix: str
    lambda_function: str | None
    closed_days: tuple[date, ...] = ()  # closures the exchange calendar cannot know (trading_days.py)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> DownloadSettings:
        env = os.environ if env is None else env
        return cls(
            tickers=parse_tickers(env.get(TICKERS)),
            start_date=env.get(START_DATE, DEFAULT_START_DATE),
            schedule_cron=env.get(SCHEDULE_CRON, DEFAULT_SCHEDULE),
            timezone=env.get(TIMEZONE, DEFAULT_TIMEZONE),
            schedule_enabled=flag(SCHEDULE_ENABLED, True, env),
            error_after_days=max(int(env.get(ERROR_AFTER_DAYS, "3")), 1),
            concurrency=max(int(env.get(CONCURRENCY, "16")), 1),
            raw_prefix=env.get(RAW_PREFIX, "raw/"),
            lambda_function=env.get(LAMBDA_FUNCTION) or None,
            closed_days=parse_closed_days(env.get(CLOSED_DAYS)),
        )

    @property
    def schedule_status(self) -> dg.DefaultScheduleStatus:
        return dg.DefaultScheduleStatus.RUNNING if self.schedule_enabled else dg.DefaultScheduleStatus.STOPPED

    def price_source(self) -> PriceSource:
        return PriceSource(
            **optional_env(**_NAMED),
            # Not secrets, and pydantic floats have no dg.EnvVar form: read as values when the location loads.
            **_tuning(os.environ),
        )


# The price source's provider fields and their variables. The definitions bind them through dg.EnvVar, so the API
# key never appears in a run's config; the Lambda reads them from its environment.
_NAMED = {"provider": PROVIDER, "base_url": BASE_URL, "api_key": API_KEY}

# The price source's rate and retry fields and their variables; a field whose variable is unset keeps the
# resource's default.
_TUNING: dict[str, tuple[str, type[float] | type[int]]] = {
    "requests_per_second": (REQUESTS_PER_SECOND, float),
    "max_attempts": (MAX_ATTEMPTS, int),
    "timeout_seconds": (TIMEOUT_SECONDS, float),
}


def _tuning(env: Mapping[str, str]) -> dict[str, Any]:
    return {field: kind(env[name]) for field, (name, kind) in _TUNING.items() if env.get(name, "").strip()}


def price_client_from_environment(env: Mapping[str, str] | None = None) -> PriceClient:
    """The client the resource builds, from a process's environment (the AWS Lambda's): the same fields, the
    same defaults and checks."""
    env = os.environ if env is None else env
    named: dict[str, Any] = {field: env[name] for field, name in _NAMED.items() if name in env}  # as optional_env
    return PriceSource(**named, **_tuning(env)).client()
