"""The intraday quotes domain's definitions: the ingest step and the daily lake compaction, their jobs, the
Kinesis stream sensor (when STOCK_PLATFORM_QUOTES_STREAM is set), the polling schedule, the compaction schedule,
and the domain's own resources ("intraday", "quote_stream", "quote_alerts").

The polling path uses the "price_source" resource, which the downloads domain binds
(stock_platform/resources/price_source.py).
"""

import dagster as dg

from stock_platform.quotes.assets import build_ingest_asset, build_lake_asset
from stock_platform.quotes.keys import QUOTE_LAKE
from stock_platform.quotes.sensors import build_poll_schedule, build_stream_sensor
from stock_platform.quotes.settings import QuoteSettings
from stock_platform.settings import Settings

COMPACTION_HOUR = 1  # exchange time: the day before is complete


def build_quote_defs(settings: Settings) -> dg.Definitions:
    quotes = QuoteSettings.from_environment(default_sensor_interval=settings.sensor_interval_seconds)
    ingest = build_ingest_asset(quotes)
    lake = build_lake_asset(quotes)
    ingest_job = dg.define_asset_job(
        name="quote_ingest_job",
        selection=dg.AssetSelection.assets(ingest),
        description="Append quotes to the monthly logs, write them to the lake, land them, and alert on moves.",
    )
    compaction_job = dg.define_asset_job(
        name="quote_lake_compaction_job",
        selection=dg.AssetSelection.assets(QUOTE_LAKE),
        description="Rewrite one day of the quotes lake into one de-duplicated file per ticker.",
    )
    schedule_status = (
        dg.DefaultScheduleStatus.RUNNING
        if settings.sensors_enabled and quotes.polling_enabled
        else dg.DefaultScheduleStatus.STOPPED
    )
    schedules = [
        build_poll_schedule(ingest_job, quotes, schedule_status),
        dg.build_schedule_from_partitioned_job(
            compaction_job,
            hour_of_day=COMPACTION_HOUR,
            name="quote_lake_compaction_schedule",
            default_status=dg.DefaultScheduleStatus.RUNNING
            if settings.sensors_enabled
            else dg.DefaultScheduleStatus.STOPPED,
        ),
    ]
    sensors = [build_stream_sensor(ingest_job, quotes, settings.sensor_status)] if quotes.stream_configured else []
    return dg.Definitions(
        assets=[ingest, lake],
        jobs=[ingest_job, compaction_job],
        sensors=sensors,
        schedules=schedules,
        resources=quotes.resources(),
    )
