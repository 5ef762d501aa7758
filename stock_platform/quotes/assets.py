"""The intraday assets: one ingest step (monthly log, lake parts, optional landing, alerts) and the daily compaction.

Thin over the Dagster-free modules. The ingest step takes its quotes from a batch the stream sensor staged in
S3, or polls the price source (the schedule); either way the same path follows: de-duplicate, append to each
month's log, write lake parts, land in PostgreSQL if enabled, and evaluate alerts. Like the batch step it records
a materialization only for the months it touched (`skippable=True` specs, explicit `AssetMaterialization`s).
"""

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
from pydantic import Field

from stock_platform.quotes import keys
from stock_platform.quotes.keys import PRICE_MOVE_ALERTS, QUOTE_LAKE, QUOTE_LAKE_PARTS, QUOTE_MONTH_LOG, STOCK_QUOTES
from stock_platform.quotes.lake import compact_day
from stock_platform.quotes.model import Quote, decode_batch
from stock_platform.quotes.pipeline import IngestResult, ingest
from stock_platform.quotes.polling import PriceSource, poll, watchlist
from stock_platform.quotes.settings import IntradayConfig, QuoteSettings
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import SourceBucket

INTRADAY = "intraday"


class IngestConfig(dg.Config):
    staged_key: str = Field(default="", description="S3 key of a batch staged by quote_stream_sensor.")
    poll: bool = Field(default=False, description="Poll the watchlist's latest prices from price_source instead.")


def build_ingest_asset(settings: QuoteSettings) -> dg.AssetsDefinition:
    months = keys.month_partitions(settings.exchange_timezone)
    specs = [
        dg.AssetSpec(
            QUOTE_MONTH_LOG,
            partitions_def=months,
            skippable=True,
            group_name=INTRADAY,
            kinds={"s3", "csv"},
            description="Quotes/YYYYMM.csv: every distinct quote of the month (exchange calendar), in time order.",
        ),
        dg.AssetSpec(
            QUOTE_LAKE_PARTS,
            partitions_def=months,
            skippable=True,
            group_name=INTRADAY,
            kinds={"s3", "parquet"},
            description="Parquet parts under Lake/quotes/date=DAY/ticker=T/, one per intake run; compacted daily.",
        ),
        dg.AssetSpec(
            PRICE_MOVE_ALERTS,
            partitions_def=months,
            skippable=True,
            group_name=INTRADAY,
            kinds={"postgres", "sns"},
            description="Alerts for quotes >= the threshold from the previous close: once per ticker, day, direction.",
        ),
    ]
    if settings.landing_enabled:
        specs.append(
            dg.AssetSpec(
                STOCK_QUOTES,
                partitions_def=months,
                skippable=True,
                group_name=INTRADAY,
                kinds={"postgres"},
                description="PostgreSQL table stock_quotes (ticker, event_time) for dashboards.",
            )
        )
    # Declared as keys, not typed parameters, because Dagster takes one or the other and quote_alerts exists only
    # when an alerts topic is configured. price_source is bound by the downloads domain.
    resource_keys = {"bucket", "postgres", "intraday", "price_source"}
    if settings.alerts_enabled:
        resource_keys.add("quote_alerts")

    @dg.multi_asset(
        name=keys.INGEST_STEP,
        specs=specs,
        check_specs=[
            dg.AssetCheckSpec(keys.UNIQUE_KEYS_CHECK, asset=QUOTE_MONTH_LOG, description="No (ticker, time) twice."),
            dg.AssetCheckSpec(keys.TIME_ORDER_CHECK, asset=QUOTE_MONTH_LOG, description="Rows in time order."),
        ],
        backfill_policy=dg.BackfillPolicy.single_run(),
        required_resource_keys=resource_keys,
    )
    def ingest_quotes(
        context: dg.AssetExecutionContext, config: IngestConfig
    ) -> Iterator[dg.AssetMaterialization | dg.AssetCheckResult]:
        """Append the run's quotes to their months' logs, write them to the lake, land them, and alert on moves."""
        bucket: SourceBucket = context.resources.bucket
        postgres: PostgresResource = context.resources.postgres
        intraday: IntradayConfig = context.resources.intraday
        quotes, rejected = _quotes_of_run(context, config, bucket, intraday)
        result = IngestResult()
        try:
            ingest(
                quotes,
                bucket=bucket,
                postgres=postgres,
                intraday=intraday,
                batch_id=_batch_id(config, context.run.run_id),
                run_id=context.run.run_id,
                alerts=getattr(context.resources, "quote_alerts", None),
                result=result,
            )
        except Exception as error:  # noqa: BLE001 - what was committed is recorded before the run fails
            yield from _events(bucket, result, rejected, config.staged_key)
            done = "; ".join(result.lines(rejected))
            raise dg.Failure(
                description=f"Ingest stopped: {postgres.scrub(f'{type(error).__name__}: {error}')}. Done before: {done}"
            ) from None  # the scrubbed text replaces the original, which may quote a secret
        for line in result.lines(rejected):
            context.log.info(line)
        yield from _events(bucket, result, rejected, config.staged_key)
        yield from _check_results(result)
        if result.alert_errors:
            raise dg.Failure(
                description=(
                    f"{len(result.alerts.still_pending)} price alert(s) could not be published and stay pending "
                    f"(the next run retries them): {result.alert_errors[0]}"
                )
            )

    return ingest_quotes


def _batch_id(config: IngestConfig, run_id: str) -> str:
    if config.staged_key:
        return config.staged_key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return run_id


def _quotes_of_run(
    context: dg.AssetExecutionContext, config: IngestConfig, bucket: SourceBucket, intraday: IntradayConfig
) -> tuple[list[Quote], list[dict[str, str]]]:
    if config.staged_key:
        return decode_batch(bucket.get_bytes(config.staged_key))
    if config.poll:
        source: PriceSource = context.resources.price_source
        polled = poll(source, watchlist(bucket, intraday.watchlist))
        for ticker, error in polled.errors.items():
            context.log.warning(f"No quote for {ticker}: {error}")
        return polled.quotes, [{"ticker": t, "reason": e} for t, e in polled.errors.items()]
    raise dg.Failure("Nothing to ingest: give staged_key (a staged stream batch) or poll: true")


def _events(
    bucket: SourceBucket, result: IngestResult, rejected: list[dict[str, str]], staged: str
) -> Iterator[dg.AssetMaterialization]:
    """One materialization per month and asset the run changed, from what it committed."""
    for month, appended in result.appended.items():
        if appended.added:
            yield dg.AssetMaterialization(
                asset_key=QUOTE_MONTH_LOG,
                partition=month,
                metadata={
                    "path": dg.MetadataValue.path(bucket.uri(appended.key)),
                    "quotes_added": len(appended.added),
                    "quotes_already_present": result.per_month[month] - len(appended.added),
                    "rows": appended.rows,
                    "write_attempts": appended.attempts,
                    "rejected_records": len(rejected),
                    **({"staged_batch": dg.MetadataValue.path(bucket.uri(staged))} if staged else {}),
                },
            )
    for month, parts in result.parts_by_month.items():
        yield dg.AssetMaterialization(asset_key=QUOTE_LAKE_PARTS, partition=month, metadata={"parts_written": parts})
    for month, landed in result.landed_by_month.items():
        yield dg.AssetMaterialization(asset_key=STOCK_QUOTES, partition=month, metadata={"rows_inserted": landed})
    alerts = result.alerts
    for month in sorted({day.strftime("%Y%m") for _, day, _ in [*alerts.claimed, *alerts.published]}):

        def of_month(keys: list[tuple[str, date, str]], month: str = month) -> list[str]:
            return [f"{ticker} {day.isoformat()} {way}" for ticker, day, way in keys if day.strftime("%Y%m") == month]

        yield dg.AssetMaterialization(
            asset_key=PRICE_MOVE_ALERTS,
            partition=month,
            metadata={
                "claimed": dg.MetadataValue.json(of_month(alerts.claimed)),
                "published": dg.MetadataValue.json(of_month(alerts.published)),
                "still_pending": dg.MetadataValue.json(of_month(alerts.still_pending)),
                "sns_message_ids": dg.MetadataValue.json(alerts.message_ids),
            },
        )


def _check_results(result: IngestResult) -> Iterator[dg.AssetCheckResult]:
    """The checks over every month this run touched, as the run left it in S3 (the object under the ETag its
    conditional write committed, or read, when nothing was new): evidence per month."""
    months = sorted(result.appended)
    facts = {m: result.appended[m].facts for m in months}
    duplicates = {m: [list(k) for k in f.duplicate_keys[:20]] for m, f in facts.items() if f.duplicate_keys}
    disorder = {m: list(f.out_of_order_rows[:20]) for m, f in facts.items() if f.out_of_order_rows}
    checked: dict[str, Any] = {
        "months_checked": dg.MetadataValue.json(months),
        "rows": sum(f.rows for f in facts.values()),
    }
    yield dg.AssetCheckResult(
        check_name=keys.UNIQUE_KEYS_CHECK,
        asset_key=QUOTE_MONTH_LOG,
        passed=not duplicates,
        metadata={**checked, "duplicate_keys": dg.MetadataValue.json(duplicates)},
    )
    yield dg.AssetCheckResult(
        check_name=keys.TIME_ORDER_CHECK,
        asset_key=QUOTE_MONTH_LOG,
        passed=not disorder,
        metadata={**checked, "rows_out_of_order": dg.MetadataValue.json(disorder)},
    )


def build_lake_asset(settings: QuoteSettings) -> dg.AssetsDefinition:
    @dg.asset(
        key=QUOTE_LAKE,
        partitions_def=keys.day_partitions(settings.exchange_timezone),
        deps=[QUOTE_LAKE_PARTS],
        group_name=INTRADAY,
        kinds={"s3", "parquet"},
    )
    def quote_lake(
        context: dg.AssetExecutionContext, bucket: SourceBucket, intraday: IntradayConfig
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        """One de-duplicated Parquet file per day and ticker: the lake Athena and pyarrow read."""
        day = date.fromisoformat(context.partition_key)
        done = compact_day(bucket, intraday.lake_prefix, day)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(bucket.uri(f"{intraday.lake_prefix}date={day.isoformat()}/")),
                "tickers": done.tickers,
                "parts_read": done.parts_read,
                "parts_deleted": done.parts_deleted,
                "rows": done.rows,
                "duplicates_dropped": done.duplicates_dropped,
            }
        )

    return quote_lake
