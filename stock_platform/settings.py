"""Every environment variable the platform reads, in one place: resources bound to `dg.EnvVar`s, and the few
settings that shape definitions (sensor intervals, default status), which cannot be EnvVars.

Read when the code location loads (`Settings.from_environment()` in definitions.py), never at import time.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from stock_platform.batch.frames import ParquetFramesIOManager
from stock_platform.batch.quality import QualityPolicy
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import MonitoredBucket, SourceBucket
from stock_platform.resources.sns import SNSResource
from stock_platform.resources.sqs import MarkerQueue

TRUE_WORDS = ("1", "true", "yes", "on")


def optional_env(**bindings: str) -> dict[str, Any]:
    """Bind each field to its variable only when the variable is set, so the field's default applies otherwise."""
    return {field: dg.EnvVar(name) for field, name in bindings.items() if name in os.environ}


def optional_int_env(**bindings: str) -> dict[str, Any]:
    return {field: dg.EnvVar.int(name) for field, name in bindings.items() if name in os.environ}


def flag(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """An on/off setting: one of TRUE_WORDS is on, anything else set is off, unset is `default`."""
    value = (os.environ if env is None else env).get(name)
    return default if value is None else value.strip().lower() in TRUE_WORDS


@dataclass(frozen=True)
class Settings:
    sensor_interval_seconds: int
    sensors_enabled: bool
    notifications_enabled: bool  # a topic is configured (STOCK_PLATFORM_SNS_TOPIC_ARN)
    observation_interval_seconds: int = 300  # how often raw_stock_files' ETags are compared with the bucket
    # S3 event notifications of the monitored bucket arrive in this SQS queue: the queue-fed trigger replaces the
    # polling marker sensor (STOCK_PLATFORM_MARKER_QUEUE_URL).
    marker_queue_enabled: bool = False
    marker_queue_visibility_seconds: int = 300
    # The watchdog (only with a topic): how old a marker may get without a run, how far back markers are watched,
    # and how long a run may wait to start before each is an incident.
    watchdog_marker_age_seconds: int = 600
    watchdog_marker_window_hours: int = 24
    watchdog_run_start_seconds: int = 900

    @classmethod
    def from_environment(cls) -> "Settings":
        return cls(
            sensor_interval_seconds=int(os.environ.get("STOCK_PLATFORM_SENSOR_INTERVAL_SECONDS", "30")),
            sensors_enabled=flag("STOCK_PLATFORM_SENSORS_ENABLED", True),
            notifications_enabled="STOCK_PLATFORM_SNS_TOPIC_ARN" in os.environ,
            observation_interval_seconds=int(os.environ.get("STOCK_PLATFORM_OBSERVATION_INTERVAL_SECONDS", "300")),
            marker_queue_enabled="STOCK_PLATFORM_MARKER_QUEUE_URL" in os.environ,
            marker_queue_visibility_seconds=int(
                os.environ.get("STOCK_PLATFORM_MARKER_QUEUE_VISIBILITY_SECONDS", "300")
            ),
            watchdog_marker_age_seconds=int(os.environ.get("STOCK_PLATFORM_WATCHDOG_MARKER_AGE_SECONDS", "600")),
            watchdog_marker_window_hours=int(os.environ.get("STOCK_PLATFORM_WATCHDOG_MARKER_WINDOW_HOURS", "24")),
            watchdog_run_start_seconds=int(os.environ.get("STOCK_PLATFORM_WATCHDOG_RUN_START_SECONDS", "900")),
        )

    @property
    def sensor_status(self) -> dg.DefaultSensorStatus:
        return dg.DefaultSensorStatus.RUNNING if self.sensors_enabled else dg.DefaultSensorStatus.STOPPED

    def resources(self) -> dict[str, Any]:
        """Every resource of the platform, keyed by the parameter name assets and sensors use."""
        s3_tuning = {
            **optional_int_env(
                max_concurrency="STOCK_PLATFORM_S3_CONCURRENCY", max_attempts="STOCK_PLATFORM_S3_MAX_ATTEMPTS"
            ),
            **optional_env(browse_url="STOCK_PLATFORM_S3_BROWSE_URL"),
        }
        bucket = SourceBucket(
            bucket=dg.EnvVar("STOCK_PLATFORM_SOURCE_BUCKET"),
            **optional_env(
                stocks_prefix="STOCK_PLATFORM_STOCKS_PREFIX",
                company_list_key="STOCK_PLATFORM_COMPANY_LIST_KEY",
                output_key="STOCK_PLATFORM_OUTPUT_KEY",
                processed_prefix="STOCK_PLATFORM_PROCESSED_PREFIX",
                rejected_prefix="STOCK_PLATFORM_REJECTED_PREFIX",
            ),
            **s3_tuning,
        )
        monitored = MonitoredBucket(
            bucket=dg.EnvVar(
                "STOCK_PLATFORM_MONITORED_BUCKET"
                if "STOCK_PLATFORM_MONITORED_BUCKET" in os.environ
                else "STOCK_PLATFORM_SOURCE_BUCKET"  # default: markers are dropped next to the batch
            ),
            **optional_env(prefix="STOCK_PLATFORM_MONITORED_PREFIX", marker_suffix="STOCK_PLATFORM_MARKER_SUFFIX"),
            **s3_tuning,
        )
        resources: dict[str, Any] = {
            "bucket": bucket,
            "monitored": monitored,
            "postgres": PostgresResource(
                url=dg.EnvVar("STOCK_PLATFORM_DATABASE_URL"),
                **optional_env(schema_name="STOCK_PLATFORM_DB_SCHEMA", table="STOCK_PLATFORM_TABLE"),
            ),
            "quality": QualityPolicy(
                max_rejected_share=float(os.environ.get("STOCK_PLATFORM_MAX_REJECTED_SHARE", "0.05")),
                **optional_int_env(max_file_bytes="STOCK_PLATFORM_MAX_FILE_BYTES"),
            ),
            "frames_io_manager": ParquetFramesIOManager(bucket=bucket),
        }
        if self.marker_queue_enabled:
            resources["marker_queue"] = MarkerQueue(
                queue_url=dg.EnvVar("STOCK_PLATFORM_MARKER_QUEUE_URL"),
                visibility_timeout_seconds=self.marker_queue_visibility_seconds,
            )
        if self.notifications_enabled:
            resources["sns"] = SNSResource(
                topic_arn=dg.EnvVar("STOCK_PLATFORM_SNS_TOPIC_ARN"),
                **optional_env(subject_prefix="STOCK_PLATFORM_NOTIFY_PREFIX", ui_base_url="STOCK_PLATFORM_UI_BASE_URL"),
                **optional_int_env(max_attempts="STOCK_PLATFORM_SNS_MAX_ATTEMPTS"),
            )
        return resources
