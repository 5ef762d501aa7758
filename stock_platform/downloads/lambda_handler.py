"""The download as an AWS Lambda: `stock_platform.downloads.lambda_handler.handler`.

Launched by the `daily_stock_prices` asset through Dagster Pipes (dagster-aws's PipesLambdaClient puts the pipes
bootstrap parameters into the event; the counts go back as a pipes materialization in the log tail, and the full
`DownloadResult` comes back as the function's response payload, which is not limited to the log tail's 4 KB), or
on its own by an EventBridge Scheduler schedule (no pipes parameters: the event may name `days`, else today).
Configuration comes from the function's environment, the same STOCK_PLATFORM_* variables as the platform's.
No Dagster import here: only the small dagster-pipes package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import boto3
from dagster_pipes import PipesMappingParamsLoader, open_dagster_pipes

from stock_platform import trading_days
from stock_platform.downloads.landing import Landing
from stock_platform.downloads.providers import Provider
from stock_platform.downloads.report import status_counts
from stock_platform.downloads.run import DownloadRequest, DownloadResult, MarkerTarget, run_download, watchlist
from stock_platform.downloads.settings import (
    PROVIDER,
    DownloadSettings,
    price_client_from_environment,
)


def today(settings: DownloadSettings, now: datetime | None = None) -> date:
    """The day an event that names no days downloads: today in the exchange's time zone."""
    zone = ZoneInfo(settings.timezone)
    return (now or datetime.now(zone)).astimezone(zone).date()


def request_from_event(event: Mapping[str, Any], settings: DownloadSettings) -> DownloadRequest:
    days = event.get("days") or [today(settings).isoformat()]
    tickers = event.get("tickers") or settings.tickers
    run_id = str(event.get("run_id") or f"lambda-{datetime.now(ZoneInfo('UTC')):%Y%m%dT%H%M%S}")
    return DownloadRequest(tuple(days), run_id, tuple(tickers) if tickers else None, bool(event.get("force")))


def download_from_event(event: Mapping[str, Any], env: Mapping[str, str] | None = None) -> DownloadResult:
    """The download an event asks for, configured from `env` (the function's environment)."""
    env = os.environ if env is None else env
    settings = DownloadSettings.from_environment(env)
    request = request_from_event(event, settings)
    s3 = boto3.client("s3")  # AWS_ENDPOINT_URL and the function's role, as boto3 resolves them
    source = env["STOCK_PLATFORM_SOURCE_BUCKET"]
    landing = Landing(s3, source, env.get("STOCK_PLATFORM_STOCKS_PREFIX", "Stocks/"), settings.raw_prefix)
    list_key = env.get("STOCK_PLATFORM_COMPANY_LIST_KEY", "CompanyNames/top_companies.txt")
    marker = MarkerTarget(
        s3,
        env.get("STOCK_PLATFORM_MONITORED_BUCKET") or source,
        env.get("STOCK_PLATFORM_MONITORED_PREFIX", ""),
        env.get("STOCK_PLATFORM_MARKER_SUFFIX", ".SUCCESS"),
    )
    tickers = watchlist(
        request.tickers or None, lambda: (landing.read(list_key)[0] or b"", f"s3://{source}/{list_key}")
    )
    client = price_client_from_environment(env)
    return run_download(
        request, client.fetch_daily, landing, tickers, marker, settings.concurrency, lambda: client.requests
    )


def handler(event: dict[str, Any], context: Any, now: datetime | None = None) -> dict[str, Any]:
    """AWS Lambda entry point: download, land, mark; return the result (and report its counts through pipes).

    Invoked by a schedule with no days on a day the exchange is closed, it asks the provider nothing and says so (the
    asset never asks for such a day: it has no partition).
    """
    loader = PipesMappingParamsLoader(event)
    if not loader.is_dagster_pipes_process():
        if not event.get("days"):
            settings = DownloadSettings.from_environment()
            day = today(settings, now)
            closed = trading_days.closure(day, settings.closed_days)
            if closed is not None:
                return {"skipped": f"{day}: the exchange is closed ({closed}): nothing to download"}
        return download_from_event(event).to_json()
    with open_dagster_pipes(params_loader=loader) as pipes:
        result = download_from_event(event)
        counts = status_counts(result)
        pipes.log.info(f"Downloaded {len(result.outcomes)} tickers: {counts}")
        # Small on purpose: these travel in the last 4 KB of the function's log.
        pipes.report_custom_message(
            {
                "provider": os.environ.get(PROVIDER, Provider.YAHOO.value),
                "tickers": len(result.outcomes),
                **{f"tickers_{status}": n for status, n in counts.items()},
                "rows_new": result.rows_new,
                "rows_corrected": result.rows_corrected,
                "marker": result.marker_key,
            }
        )
    return result.to_json()
