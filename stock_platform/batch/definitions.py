"""The batch load's definitions: the company list, the raw files, the batch step, its job and the marker trigger."""

import dagster as dg

from stock_platform.batch.assets import load_stock_batch, raw_stock_files
from stock_platform.batch.jobs import stock_batch_job, table_checks_job
from stock_platform.batch.observation import build_observation_sensor
from stock_platform.batch.sensors import build_marker_sensor, build_queue_sensor
from stock_platform.settings import Settings


def build_batch_defs(settings: Settings) -> dg.Definitions:
    interval, status = settings.sensor_interval_seconds, settings.sensor_status
    if settings.marker_queue_enabled:
        # The queue-fed trigger replaces the polling sensor rather than running beside it: the two learn of one
        # upload at different times under different run keys, so both would start a run for it. Its queue
        # resource, "marker_queue", is bound with the others in settings.py.
        trigger = build_queue_sensor(stock_batch_job, interval, status)
    else:
        trigger = build_marker_sensor(stock_batch_job, interval, status)
    return dg.Definitions(
        assets=[raw_stock_files, load_stock_batch],
        jobs=[stock_batch_job, table_checks_job],
        sensors=[trigger, build_observation_sensor(settings.observation_interval_seconds, status)],
    )
