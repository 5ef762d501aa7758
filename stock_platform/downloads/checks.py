"""`daily_stock_prices_tickers_are_available`: a ticker that keeps failing, WARN at first, ERROR when it persists.

Each run records, per trading day it covered, an AssetObservation with the tickers that failed and why (also when
the run itself fails, which records no materialization). A ticker's streak is the days of this run plus the
consecutive earlier trading days whose latest observation lists it as failing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import dagster as dg

from stock_platform.downloads.keys import DAILY_STOCK_PRICES
from stock_platform.downloads.run import DownloadResult

TICKERS_AVAILABLE = "daily_stock_prices_tickers_are_available"
FAILING_KEY = "failing_tickers"
EXAMPLES_CAP = 50

TICKERS_AVAILABLE_SPEC = dg.AssetCheckSpec(
    TICKERS_AVAILABLE,
    asset=DAILY_STOCK_PRICES,
    description=(
        "Every watchlist ticker got prices: WARN while a ticker has failed on fewer consecutive trading days than "
        "STOCK_PLATFORM_DOWNLOAD_ERROR_AFTER_DAYS, ERROR from then on."
    ),
)


def failing_observations(result: DownloadResult) -> list[dg.AssetObservation]:
    failing = {o.ticker: o.reason or o.status.value for o in result.failed}
    return [
        dg.AssetObservation(
            asset_key=DAILY_STOCK_PRICES, partition=day, metadata={FAILING_KEY: dg.MetadataValue.json(failing)}
        )
        for day in result.days
    ]


def failing_history(instance: dg.DagsterInstance, days: Sequence[str]) -> dict[str, set[str]]:
    """Day -> tickers failing on it, from each day's latest observation (days never observed are absent)."""
    if not days:
        return {}
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=DAILY_STOCK_PRICES, asset_partitions=list(days)), limit=len(days) * 20
    ).records
    history: dict[str, set[str]] = {}
    for record in records:  # newest first
        observation = record.asset_observation
        if observation is None or observation.partition is None or observation.partition in history:
            continue
        value = observation.metadata.get(FAILING_KEY)
        if value is not None:
            data = value.value
            history[observation.partition] = set(data if isinstance(data, dict) else json.loads(str(data)))
    return history


def streaks(result: DownloadResult, earlier_days: Sequence[str], history: Mapping[str, set[str]]) -> dict[str, int]:
    """Consecutive failing trading days per failing ticker, up to this run's last day. Pure."""
    out: dict[str, int] = {}
    for outcome in result.failed:
        days = len(result.days)
        for day in reversed(earlier_days):
            if outcome.ticker not in history.get(day, set()):
                break
            days += 1
        out[outcome.ticker] = days
    return out


def tickers_available_result(
    result: DownloadResult, days_failing: Mapping[str, int], error_after_days: int
) -> dg.AssetCheckResult:
    worst = max(days_failing.values(), default=0)
    severity = dg.AssetCheckSeverity.ERROR if worst >= error_after_days else dg.AssetCheckSeverity.WARN
    failing = sorted(result.failed, key=lambda o: (-days_failing.get(o.ticker, 0), o.ticker))
    return dg.AssetCheckResult(
        asset_key=DAILY_STOCK_PRICES,
        check_name=TICKERS_AVAILABLE,
        passed=not failing,
        severity=severity,
        metadata={
            "failing_tickers": len(failing),
            "tickers": len(result.outcomes),
            "longest_streak_days": worst,
            "error_after_days": error_after_days,
            "evidence": dg.MetadataValue.json(
                [
                    {"ticker": o.ticker, "days_failing": days_failing.get(o.ticker, 0), "reason": o.reason}
                    for o in failing[:EXAMPLES_CAP]
                ]
            ),
        },
    )
