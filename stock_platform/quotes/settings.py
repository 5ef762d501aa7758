"""Every environment variable of the intraday quotes domain, in the style of stock_platform/settings.py.

Read when the code location loads (`QuoteSettings.from_environment()` in quotes/definitions.py), never at import
time. Settings that shape definitions (the exchange time zone of the partitions, the schedule's cron, the sensor
interval) are plain values; everything else is bound to `dg.EnvVar`s in `resources()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from stock_platform.resources.kinesis import KinesisStream
from stock_platform.resources.sns import SNSResource
from stock_platform.settings import flag, optional_env, optional_int_env
from stock_platform.trading_days import CLOSED_DAYS, parse_closed_days

STREAM_ENV = "STOCK_PLATFORM_QUOTES_STREAM"
ALERTS_TOPIC_ENV = "STOCK_PLATFORM_ALERTS_TOPIC_ARN"
PIPELINE_TOPIC_ENV = "STOCK_PLATFORM_SNS_TOPIC_ARN"


class IntradayConfig(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the intraday domain keeps quotes and how it alerts (prefixes in the source bucket, threshold)."""

    exchange_timezone: str = Field(
        default="America/New_York", description="Exchange time zone: months, trading days and market hours."
    )
    log_prefix: str = Field(default="Quotes/", description="Monthly logs: <prefix><YYYYMM>.csv.")
    lake_prefix: str = Field(
        default="Lake/quotes/", description="Parquet lake: <prefix>date=<YYYY-MM-DD>/ticker=<T>/part-*.parquet."
    )
    staging_prefix: str = Field(
        default="Staging/quotes/",
        description="Batches the stream sensor hands its runs (expire with a lifecycle rule).",
    )
    alert_threshold_percent: float = Field(
        default=1.0, description="A quote this far (percent) from the previous close alerts."
    )
    land_in_postgres: bool = Field(default=False, description="Also land quotes in PostgreSQL table stock_quotes.")
    watchlist: str = Field(
        default="", description="Tickers polled, comma-separated; empty: the tickers of the company list."
    )
    max_append_attempts: int = Field(default=30, description="Monthly log writes retried on a concurrent write.")


@dataclass(frozen=True)
class QuoteSettings:
    exchange_timezone: str
    market_open: time
    market_close: time
    poll_minutes: int
    polling_enabled: bool  # the schedule runs by default (it polls price_source, bound by the downloads domain)
    stream_configured: bool  # STOCK_PLATFORM_QUOTES_STREAM is set: the stream sensor exists
    sensor_interval_seconds: int
    max_quotes_per_tick: int
    alerts_topic_env: str | None  # the variable holding the alerts topic, if any
    landing_enabled: bool
    alert_threshold_percent: float
    closed_days: tuple[date, ...] = ()  # closures the exchange calendar cannot know (trading_days.py)

    @classmethod
    def from_environment(cls, default_sensor_interval: int = 30) -> QuoteSettings:
        zone = os.environ.get("STOCK_PLATFORM_EXCHANGE_TIMEZONE", "America/New_York")
        ZoneInfo(zone)  # an unknown zone fails at load time, naming itself
        poll_minutes = int(os.environ.get("STOCK_PLATFORM_QUOTES_POLL_MINUTES", "5"))
        if not 1 <= poll_minutes <= 59:
            raise ValueError(f"STOCK_PLATFORM_QUOTES_POLL_MINUTES={poll_minutes}: between 1 and 59")
        market_open = time.fromisoformat(os.environ.get("STOCK_PLATFORM_MARKET_OPEN", "09:30"))
        market_close = time.fromisoformat(os.environ.get("STOCK_PLATFORM_MARKET_CLOSE", "16:00"))
        if market_open >= market_close:
            raise ValueError("STOCK_PLATFORM_MARKET_OPEN must be before STOCK_PLATFORM_MARKET_CLOSE")
        topic = ALERTS_TOPIC_ENV if ALERTS_TOPIC_ENV in os.environ else None
        if topic is None and PIPELINE_TOPIC_ENV in os.environ:
            topic = PIPELINE_TOPIC_ENV
        return cls(
            exchange_timezone=zone,
            market_open=market_open,
            market_close=market_close,
            poll_minutes=poll_minutes,
            polling_enabled=flag("STOCK_PLATFORM_QUOTES_POLLING", False),
            stream_configured=STREAM_ENV in os.environ,
            sensor_interval_seconds=int(
                os.environ.get("STOCK_PLATFORM_QUOTES_SENSOR_INTERVAL_SECONDS", str(default_sensor_interval))
            ),
            max_quotes_per_tick=int(os.environ.get("STOCK_PLATFORM_QUOTES_MAX_PER_TICK", "20000")),
            alerts_topic_env=topic,
            landing_enabled=flag("STOCK_PLATFORM_QUOTES_TO_POSTGRES", False),
            # A number, not an EnvVar: Dagster resolves EnvVars to text, and the field is a float.
            alert_threshold_percent=float(os.environ.get("STOCK_PLATFORM_ALERT_THRESHOLD_PERCENT", "1.0")),
            closed_days=parse_closed_days(os.environ.get(CLOSED_DAYS)),
        )

    @property
    def alerts_enabled(self) -> bool:
        return self.alerts_topic_env is not None

    def resources(self) -> dict[str, Any]:
        """The domain's own resources, keyed by the parameter names its assets and sensor use."""
        resources: dict[str, Any] = {
            "intraday": IntradayConfig(
                exchange_timezone=self.exchange_timezone,
                land_in_postgres=self.landing_enabled,
                **optional_env(
                    log_prefix="STOCK_PLATFORM_QUOTES_PREFIX",
                    lake_prefix="STOCK_PLATFORM_QUOTES_LAKE_PREFIX",
                    staging_prefix="STOCK_PLATFORM_QUOTES_STAGING_PREFIX",
                    watchlist="STOCK_PLATFORM_WATCHLIST",
                ),
                alert_threshold_percent=self.alert_threshold_percent,
            )
        }
        if self.stream_configured:
            resources["quote_stream"] = KinesisStream(stream_name=dg.EnvVar(STREAM_ENV))
        if self.alerts_topic_env is not None:
            resources["quote_alerts"] = SNSResource(
                topic_arn=dg.EnvVar(self.alerts_topic_env),
                **optional_env(subject_prefix="STOCK_PLATFORM_NOTIFY_PREFIX"),
                **optional_int_env(max_attempts="STOCK_PLATFORM_SNS_MAX_ATTEMPTS"),
            )
        return resources
