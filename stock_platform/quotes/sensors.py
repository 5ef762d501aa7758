"""The stream sensor and the polling schedule: the two intakes, each starting runs of the same ingest job.

Each sensor tick reads at most `max_quotes_per_tick` new records (stream.py), stages them as one JSON object in
S3 and returns one SensorResult: one RunRequest over the month(s) the quotes fall in, carrying the staged key,
plus the new cursor. Staging keeps run configuration (stored with every run) small whatever the tick's size.
The run key and the staged key derive from the cursor before and after the tick, so a tick evaluated twice from
the same cursor asks for the same run, which Dagster launches once.
"""

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg

from stock_platform.quotes.keys import INGEST_STEP
from stock_platform.quotes.model import Quote, dedupe, encode_batch, format_time, month_of
from stock_platform.quotes.polling import in_market_hours
from stock_platform.quotes.settings import IntradayConfig, QuoteSettings
from stock_platform.quotes.stream import read_tick
from stock_platform.resources.kinesis import KinesisStream
from stock_platform.resources.s3 import SourceBucket
from stock_platform.runtime import daemon_min_interval
from stock_platform.tags import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

FUTURE_TOLERANCE = timedelta(days=1)  # a quote stamped further ahead than this is a producer's clock error


def batch_id(stream_name: str, before: str | None, after: str) -> str:
    return hashlib.sha256(f"{stream_name}\n{before or ''}\n{after}".encode()).hexdigest()[:24]


def split_future(quotes: list[Quote], now: datetime) -> tuple[list[Quote], list[dict[str, str]]]:
    """Quotes stamped beyond now + FUTURE_TOLERANCE are rejected (their month has no partition yet). Pure."""
    limit = now + FUTURE_TOLERANCE
    kept = [q for q in quotes if q.event_time <= limit]
    rejected = [
        {"reason": f"event time {q.time_text} is in the future (after {format_time(limit)})", "data": str(q.to_json())}
        for q in quotes
        if q.event_time > limit
    ]
    return kept, rejected


def month_range_tags(months: list[str]) -> dict[str, str]:
    return {PARTITION_RANGE_START_TAG: months[0], PARTITION_RANGE_END_TAG: months[-1]}


def ingest_run_config(staged_key: str = "", poll: bool = False) -> dict[str, Any]:
    return {"ops": {INGEST_STEP: {"config": {"staged_key": staged_key, "poll": poll}}}}


def build_stream_sensor(
    job: Any, settings: QuoteSettings, default_status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    @dg.sensor(
        name="quote_stream_sensor",
        job=job,
        minimum_interval_seconds=daemon_min_interval(settings.sensor_interval_seconds),
        default_status=default_status,
        description="Reads new quotes from the Kinesis stream and starts one ingest run per tick over their months.",
    )
    def quote_stream_sensor(
        context: dg.SensorEvaluationContext,
        quote_stream: KinesisStream,
        bucket: SourceBucket,
        intraday: IntradayConfig,
    ) -> dg.SensorResult:
        read = read_tick(quote_stream, context.cursor, settings.max_quotes_per_tick)
        cursor = read.cursor.encode()
        quotes, future = split_future(read.quotes, datetime.now(timezone.utc))
        rejected = read.rejected + future
        if not read.records:
            waiting = f"; waiting for parents of {read.waiting}" if read.waiting else ""
            return dg.SensorResult(skip_reason=f"No new records on {quote_stream.stream_name}{waiting}", cursor=cursor)
        ident = batch_id(quote_stream.stream_name, context.cursor, cursor)
        staged_key = f"{intraday.staging_prefix}{ident}.json"
        unique = dedupe(quotes)
        # Staged before the cursor moves on: a tick that fails here reads the same records again next time.
        bucket.put_bytes(staged_key, encode_batch(unique, rejected), "application/json")
        if rejected:
            context.log.warning(f"{len(rejected)} records rejected, kept in {bucket.uri(staged_key)}: {rejected[0]}")
        if not unique:
            return dg.SensorResult(
                skip_reason=f"{read.records} records, none a valid quote (kept in {bucket.uri(staged_key)})",
                cursor=cursor,
            )
        months = sorted({month_of(q.event_time, intraday.exchange_timezone) for q in unique})
        context.log.info(
            f"{read.records} records ({len(unique)} distinct quotes) from shards {read.records_per_shard}; "
            f"months {months}{'; capped, more waiting' if read.capped else ''}"
        )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"quotes-{ident}",
                    run_config=ingest_run_config(staged_key=staged_key),
                    tags=month_range_tags(months),
                )
            ],
            cursor=cursor,
        )

    return quote_stream_sensor


def poll_cron(settings: QuoteSettings) -> str:
    """Every N minutes, Monday to Friday, in the hours the market is open (minutes are filtered in the tick)."""
    return f"*/{settings.poll_minutes} {settings.market_open.hour}-{settings.market_close.hour} * * 1-5"


def build_poll_schedule(
    job: Any, settings: QuoteSettings, default_status: dg.DefaultScheduleStatus
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="quote_polling_schedule",
        job=job,
        cron_schedule=poll_cron(settings),
        execution_timezone=settings.exchange_timezone,
        default_status=default_status,
        description="Polls the watchlist's latest prices every few minutes in market hours and ingests them.",
    )
    def quote_polling_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        moment = context.scheduled_execution_time or datetime.now(timezone.utc)
        tz = settings.exchange_timezone
        if not in_market_hours(moment, tz, settings.market_open, settings.market_close, settings.closed_days):
            return dg.SkipReason(
                f"{moment.isoformat()} is outside market hours ({settings.market_open}-{settings.market_close} {tz}, "
                "trading days)"
            )
        return dg.RunRequest(
            run_key=f"poll-{format_time(moment)}",
            run_config=ingest_run_config(poll=True),
            partition_key=month_of(moment, tz),
        )

    return quote_polling_schedule
