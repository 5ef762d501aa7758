"""The batch load's definitions: the company list, the raw files, the batch step, its job and the marker sensor."""

import dagster as dg

from stock_platform.batch.assets import load_stock_batch, raw_stock_files, top_companies
from stock_platform.batch.jobs import stock_batch_job, table_checks_job
from stock_platform.batch.sensors import build_marker_sensor
from stock_platform.settings import Settings


def build_batch_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=[raw_stock_files, top_companies, load_stock_batch],
        jobs=[stock_batch_job, table_checks_job],
        sensors=[build_marker_sensor(stock_batch_job, settings.sensor_interval_seconds, settings.sensor_status)],
    )
