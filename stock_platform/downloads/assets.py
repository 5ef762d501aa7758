"""The daily download asset, its job and its schedule: thin over run.py's Dagster-free `run_download`.

One partition per trading day in the exchange's time zone (weekends skipped). A date-range backfill is one run
(BackfillPolicy.single_run) that asks the provider for each ticker's whole range in one request.

A run fails (dg.Failure, carrying the report) only when no ticker got prices: then nothing was written. Some tickers
failing is a success with the `daily_stock_prices_tickers_are_available` check failing (WARN, then ERROR).
"""

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from stock_platform import trading_days
from stock_platform.downloads import checks
from stock_platform.downloads.keys import DAILY_STOCK_PRICES
from stock_platform.downloads.landing import Landing
from stock_platform.downloads.report import date_range, failure_message, per_day, report_lines, status_counts
from stock_platform.downloads.run import DownloadRequest, DownloadResult, MarkerTarget, run_download, watchlist
from stock_platform.downloads.serverless import DownloadLambda
from stock_platform.downloads.settings import DownloadSettings
from stock_platform.notifications.messages import REPORT_METADATA_KEY
from stock_platform.resources.price_source import PriceSource
from stock_platform.resources.s3 import MonitoredBucket, SourceBucket

DOWNLOADS = "downloads"
DAILY_DOWNLOAD_JOB = "daily_download_job"
DAILY_DOWNLOAD_SCHEDULE = "daily_download_schedule"
TABLE_CAP = 1000


class DownloadConfig(dg.Config):
    force: bool = Field(default=False, description="Overwrite raw/ objects that already exist for these days.")
    tickers: list[str] = Field(default_factory=list, description="Only these tickers (default: the watchlist).")


def trading_day_partitions(settings: DownloadSettings) -> dg.TimeWindowPartitionsDefinition:
    # One window per trading day (Friday's runs to Monday); end_offset=1 makes today's partition exist during the
    # day, so the 18:30 schedule downloads the session that has just closed. The exchange's closures are left out:
    # a day without prices is nothing to download, to backfill, or to count against a ticker. They are listed up
    # to the end of next year; the code location is reloaded long before that (every deploy, every restart).
    zone = ZoneInfo(settings.timezone)
    first = date.fromisoformat(settings.start_date)
    closed = trading_days.closures(first, date(datetime.now(zone).year + 1, 12, 31), settings.closed_days)
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        fmt="%Y-%m-%d",
        start=settings.start_date,
        timezone=settings.timezone,
        end_offset=1,
        exclusions=[datetime(d.year, d.month, d.day, tzinfo=zone) for d in closed] or None,
    )


def outcome_table(result: DownloadResult) -> dg.TableMetadataValue:
    columns = [
        "ticker",
        "status",
        "reason",
        "rows_new",
        "rows_corrected",
        "rows_rejected",
        "first_rejected",
        "date_range",
        "raw_written",
    ]
    records = [
        dg.TableRecord(
            {
                "ticker": o.ticker,
                "status": o.status.value,
                "reason": o.reason or "",
                "rows_new": len(o.new_dates),
                "rows_corrected": len(o.corrected_dates),
                "rows_rejected": o.rows_rejected,
                "first_rejected": o.reject_examples[0] if o.reject_examples else "",
                "date_range": date_range(o),
                "raw_written": o.raw_written,
            }
        )
        for o in sorted(result.outcomes, key=lambda o: (not o.failed, o.ticker))[:TABLE_CAP]
    ]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(c, "int" if c.startswith(("rows", "raw")) else "string") for c in columns]
    )
    return dg.MetadataValue.table(records, schema)


def day_table(result: DownloadResult) -> dg.TableMetadataValue:
    records = [
        dg.TableRecord(
            {
                "day": d.day,
                "tickers_with_prices": d.tickers_with_prices,
                "rows_new": d.rows_new,
                "rows_corrected": d.rows_corrected,
            }
        )
        for d in per_day(result)
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("day", "string"),
            dg.TableColumn("tickers_with_prices", "int"),
            dg.TableColumn("rows_new", "int"),
            dg.TableColumn("rows_corrected", "int"),
        ]
    )
    return dg.MetadataValue.table(records, schema)


def result_metadata(result: DownloadResult, report: str, marker_uri: str | None) -> dict[str, Any]:
    return {
        REPORT_METADATA_KEY: report,
        "tickers": len(result.outcomes),
        **{f"tickers_{status}": n for status, n in status_counts(result).items()},
        "rows_new": result.rows_new,
        "rows_corrected": result.rows_corrected,
        "rows_rejected": result.rows_rejected,
        "raw_objects_written": result.raw_objects_written,
        "provider_requests": result.requests,
        "marker": marker_uri or "(none: no Stocks/ file changed)",
        "changed_companies": dg.MetadataValue.json(result.changed),
        "per_ticker": outcome_table(result),
        "per_day": day_table(result),
    }


def build_download_asset(settings: DownloadSettings) -> dg.AssetsDefinition:
    partitions = trading_day_partitions(settings)

    @dg.asset(
        key=DAILY_STOCK_PRICES,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[checks.TICKERS_AVAILABLE_SPEC],
        group_name=DOWNLOADS,
        kinds={"s3"},
    )
    def daily_stock_prices(
        context: dg.AssetExecutionContext,
        config: DownloadConfig,
        price_source: PriceSource,
        bucket: SourceBucket,
        monitored: MonitoredBucket,
        download_lambda: DownloadLambda,
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        """Daily prices of the watchlist, downloaded from the price source into raw/<day>/ and merged into Stocks/."""
        days = tuple(context.partition_keys)
        configured = tuple(config.tickers) or settings.tickers
        request = DownloadRequest(days, context.run.run_id, configured, config.force)
        source = price_source.provider_kind.value
        counts: dict[str, Any] = {}
        if download_lambda.enabled:
            result, counts = download_lambda.download(context, request)
            context.log.info(f"Lambda {download_lambda.function_name} reported through pipes: {counts}")
            source = str(counts.get("provider", source))
        else:
            landing = Landing(bucket.get_client(), bucket.bucket, bucket.stocks_prefix, settings.raw_prefix)
            # Configured tickers go through the same normalisation as the list's (`AAPL` is company `aapl`).
            tickers = watchlist(
                request.tickers or None,
                lambda: (bucket.get_bytes(bucket.company_list_key), bucket.uri(bucket.company_list_key)),
            )
            client = price_source.client()
            before = client.requests
            result = run_download(
                request,
                client.fetch_daily,
                landing,
                tickers,
                MarkerTarget(monitored.get_client(), monitored.bucket, monitored.prefix, monitored.marker_suffix),
                settings.concurrency,
                lambda: client.requests - before,
            )
        for observation in checks.failing_observations(result):
            context.log_event(observation)
        marker_uri = monitored.uri(result.marker_key) if result.marker_key else None
        report = "\n".join(report_lines(result, source, marker_uri))
        context.log.info(report)
        if result.all_failed:
            raise dg.Failure(
                description=failure_message(result, source),
                metadata=result_metadata(result, report, marker_uri),
            )
        earlier = _earlier_days(partitions, days[0], settings.error_after_days, context.instance)
        history = checks.failing_history(context.instance, earlier)
        check = checks.tickers_available_result(
            result, checks.streaks(result, earlier, history), settings.error_after_days
        )
        metadata = result_metadata(result, report, marker_uri)
        if counts:
            metadata["lambda_reported"] = dg.MetadataValue.json(counts)  # what the function said through pipes
        return dg.MaterializeResult(metadata=metadata, check_results=[check])

    return daily_stock_prices


def _earlier_days(
    partitions: dg.TimeWindowPartitionsDefinition, first: str, count: int, instance: dg.DagsterInstance
) -> list[str]:
    """The `count` trading days before `first`, oldest first."""
    keys = partitions.get_partition_keys(dynamic_partitions_store=instance)
    at = keys.index(first) if first in keys else len(keys)
    return list(keys[max(0, at - count) : at])


def build_download_job(asset: dg.AssetsDefinition) -> Any:
    return dg.define_asset_job(
        name=DAILY_DOWNLOAD_JOB,
        selection=dg.AssetSelection.assets(asset),
        description="Download the watchlist's daily prices, land them in S3, and drop one marker for the load.",
    )


def build_download_schedule(job: Any, settings: DownloadSettings) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=DAILY_DOWNLOAD_SCHEDULE,
        job=job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.timezone,
        default_status=settings.schedule_status,
        description="Downloads the trading day that has just closed (default 18:30 America/New_York, weekdays; "
        "skipped on the exchange's holidays).",
    )
    def daily_download_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        day = context.scheduled_execution_time.astimezone(ZoneInfo(settings.timezone)).date()
        closed = trading_days.closure(day, settings.closed_days)
        if closed is not None:
            return dg.SkipReason(f"{day}: the exchange is closed ({closed}), no trading-day partition")
        return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())

    return daily_download_schedule
