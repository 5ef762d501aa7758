"""`make run`'s download day and batch, and their report: the same jobs as the schedule, the sensor and the CLI
run, on the local stack, printed for a person."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from stock_platform import trading_days
from stock_platform.batch.runs import BatchRunResult, run_batch
from stock_platform.batch.summary import describe
from stock_platform.definitions import defs
from stock_platform.downloads.assets import DAILY_DOWNLOAD_JOB
from stock_platform.downloads.keys import DAILY_STOCK_PRICES
from stock_platform.downloads.settings import DownloadSettings
from stock_platform.notifications.sensors import notify, run_reports
from stock_platform.resources.postgres import PostgresResource

SAMPLE_QUERY = """
SELECT company_name, count(*) AS trading_days, min(stock_date) AS first_day, max(stock_date) AS last_day,
       round(avg(daily_percent_change)::numeric, 4) AS avg_daily_pct
FROM {table} GROUP BY company_name ORDER BY trading_days DESC, company_name LIMIT 5
"""


@dataclass(frozen=True)
class DownloadOutcome:
    run_id: str
    day: str
    success: bool
    report: str  # the lines the run's message carries
    marker_uri: str | None  # the marker it dropped for the load, when some Stocks/ file changed


def last_trading_day(today: date | None = None) -> str:
    """The trading day before today in the exchange's time zone, on the downloads' calendar (their partitions):
    the last day whose prices are complete."""
    settings = DownloadSettings.from_environment()
    today = today or datetime.now(ZoneInfo(settings.timezone)).date()
    return trading_days.previous_trading_day(today, settings.closed_days).isoformat()


def execute_download(day: str, instance: dg.DagsterInstance | None = None) -> DownloadOutcome:
    """One run of the daily download for `day`, notified like any other run."""
    definitions = defs()
    instance = instance or dg.DagsterInstance.get()
    result = definitions.resolve_job_def(DAILY_DOWNLOAD_JOB).execute_in_process(
        instance=instance,
        partition_key=day,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )
    marker = None
    for event in result.asset_materializations_for_node(DAILY_STOCK_PRICES.path[-1]):
        value = str(event.metadata["marker"].value) if "marker" in event.metadata else ""
        marker = value if value.startswith("s3://") else None
    sns = (definitions.resources or {}).get("sns")
    run = instance.get_run_by_id(result.run_id)
    if sns is not None and run is not None:
        with dg.build_resources({"sns": sns}) as resources:
            notify(instance, run, resources.sns, logging.getLogger("stock_platform.local"))
    report = "\n".join(run_reports(instance, result.run_id))
    return DownloadOutcome(result.run_id, day, result.success, report, marker)


def execute_batch(
    force_reload: bool = False,
    companies: list[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    partition_range: tuple[str, str] | None = None,
    raise_on_error: bool = False,
    prune_unlisted: bool = False,
    tags: dict[str, str] | None = None,
) -> BatchRunResult:
    """One batch run over every company partition (or the hand-picked `companies`), notified like any other."""
    return run_batch(
        defs(),
        instance or dg.DagsterInstance.get(),
        companies=companies,
        partition_range=partition_range,
        force_reload=force_reload,
        prune_unlisted=prune_unlisted,
        notify_sns=True,
        raise_on_error=raise_on_error,
        tags=tags,
    )


def print_download(outcome: DownloadOutcome) -> None:
    status = "SUCCESS" if outcome.success else "FAILURE"
    # Its report is in the run's log above and in its message below.
    print(f"\n== daily_download_job run {outcome.run_id} for {outcome.day}: {status}")


def print_report(result: BatchRunResult, elapsed_s: float | None = None) -> None:
    postgres = PostgresResource(
        url=os.environ["STOCK_PLATFORM_DATABASE_URL"],
        schema_name=os.environ.get("STOCK_PLATFORM_DB_SCHEMA", "public"),
        table=os.environ.get("STOCK_PLATFORM_TABLE", "historical_stocks_data"),
    )
    status = "SUCCESS" if result.success else "FAILURE"
    lines = [
        "",
        f"== stock_batch_job run {result.run_id}: {status}" + (f" in {elapsed_s:.1f}s" if elapsed_s else "") + " "
        f"(partitions added {len(result.partitions_added)}, removed {len(result.partitions_deleted)})",
        f"Table: {postgres.schema_name}.{postgres.table} at {postgres.safe_url()}",
    ]
    if result.summary is not None:
        lines += describe(result.summary)
    if result.error:
        lines.append(f"Error: {result.error}")
    print("\n".join(lines))
    if result.success:
        table = f'"{postgres.schema_name}"."{postgres.table}"'
        sample = pd.read_sql(SAMPLE_QUERY.format(table=table), postgres.engine())
        print("Sample query (top 5 companies by trading days):")
        print(sample.to_string(index=False))
