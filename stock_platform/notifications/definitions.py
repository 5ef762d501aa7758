"""Notification definitions: one SNS message per run of the monitored jobs (only when a topic is configured)."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from stock_platform.notifications.sensors import build_notification_sensors
from stock_platform.settings import Settings


def build_notification_defs(settings: Settings, monitored_jobs: Sequence[Any]) -> dg.Definitions:
    if not settings.notifications_enabled:
        return dg.Definitions()  # without STOCK_PLATFORM_SNS_TOPIC_ARN the platform runs silently
    return dg.Definitions(
        sensors=build_notification_sensors(monitored_jobs, settings.sensor_interval_seconds, settings.sensor_status)
    )
