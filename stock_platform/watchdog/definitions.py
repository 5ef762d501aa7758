"""The watchdog's definitions: its one sensor, defined only when a topic is configured (like notifications)."""

import dagster as dg

from stock_platform.settings import Settings
from stock_platform.watchdog.incidents import Limits
from stock_platform.watchdog.sensors import build_watchdog_sensor


def watchdog_limits(settings: Settings) -> Limits:
    return Limits(
        marker_age_s=settings.watchdog_marker_age_seconds,
        marker_window_s=settings.watchdog_marker_window_hours * 3600,
        run_start_s=settings.watchdog_run_start_seconds,
    )


def build_watchdog_defs(settings: Settings) -> dg.Definitions:
    if not settings.notifications_enabled:
        return dg.Definitions()  # without STOCK_PLATFORM_SNS_TOPIC_ARN there is nowhere to send a notice
    sensor = build_watchdog_sensor(watchdog_limits(settings), settings.sensor_interval_seconds, settings.sensor_status)
    return dg.Definitions(sensors=[sensor])
