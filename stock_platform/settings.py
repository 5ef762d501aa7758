"""Every environment variable the platform reads, in one place: resources bound to `dg.EnvVar`s, and the few
settings that shape definitions (sensor intervals, default status), which cannot be EnvVars.

Read when the code location loads (`Settings.from_environment()` in definitions.py), never at import time.
"""

import os
from dataclasses import dataclass
from typing import Any

import dagster as dg

from stock_platform.batch.frames import ParquetFramesIOManager
from stock_platform.batch.quality import QualityPolicy
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import MonitoredBucket, SourceBucket
from stock_platform.resources.sns import SNSResource

TRUE_WORDS = ("1", "true", "yes", "on")


def _optional(**bindings: str) -> dict[str, Any]:
    """Bind each field to its variable only when the variable is set, so the field's default applies otherwise."""
    return {field: dg.EnvVar(name) for field, name in bindings.items() if name in os.environ}


def _optional_int(**bindings: str) -> dict[str, Any]:
    return {field: dg.EnvVar.int(name) for field, name in bindings.items() if name in os.environ}


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in TRUE_WORDS


@dataclass(frozen=True)
class Settings:
    sensor_interval_seconds: int
    sensors_enabled: bool
    notifications_enabled: bool  # a topic is configured (STOCK_PLATFORM_SNS_TOPIC_ARN)

    @classmethod
    def from_environment(cls) -> "Settings":
        return cls(
            sensor_interval_seconds=int(os.environ.get("STOCK_PLATFORM_SENSOR_INTERVAL_SECONDS", "30")),
            sensors_enabled=_flag("STOCK_PLATFORM_SENSORS_ENABLED", True),
            notifications_enabled="STOCK_PLATFORM_SNS_TOPIC_ARN" in os.environ,
        )

    @property
    def sensor_status(self) -> dg.DefaultSensorStatus:
        return dg.DefaultSensorStatus.RUNNING if self.sensors_enabled else dg.DefaultSensorStatus.STOPPED

    def resources(self) -> dict[str, Any]:
        """Every resource of the platform, keyed by the parameter name assets and sensors use."""
        s3_tuning = {
            **_optional_int(
                max_concurrency="STOCK_PLATFORM_S3_CONCURRENCY", max_attempts="STOCK_PLATFORM_S3_MAX_ATTEMPTS"
            ),
            **_optional(browse_url="STOCK_PLATFORM_S3_BROWSE_URL"),
        }
        bucket = SourceBucket(
            bucket=dg.EnvVar("STOCK_PLATFORM_SOURCE_BUCKET"),
            **_optional(
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
            **_optional(prefix="STOCK_PLATFORM_MONITORED_PREFIX", marker_suffix="STOCK_PLATFORM_MARKER_SUFFIX"),
            **s3_tuning,
        )
        resources: dict[str, Any] = {
            "bucket": bucket,
            "monitored": monitored,
            "postgres": PostgresResource(
                url=dg.EnvVar("STOCK_PLATFORM_DATABASE_URL"),
                **_optional(schema_name="STOCK_PLATFORM_DB_SCHEMA", table="STOCK_PLATFORM_TABLE"),
            ),
            "quality": QualityPolicy(
                max_rejected_share=float(os.environ.get("STOCK_PLATFORM_MAX_REJECTED_SHARE", "0.05")),
                **_optional_int(max_file_bytes="STOCK_PLATFORM_MAX_FILE_BYTES"),
            ),
            "frames_io_manager": ParquetFramesIOManager(bucket=bucket),
        }
        if self.notifications_enabled:
            resources["sns"] = SNSResource(
                topic_arn=dg.EnvVar("STOCK_PLATFORM_SNS_TOPIC_ARN"),
                **_optional(subject_prefix="STOCK_PLATFORM_NOTIFY_PREFIX", ui_base_url="STOCK_PLATFORM_UI_BASE_URL"),
                **_optional_int(max_attempts="STOCK_PLATFORM_SNS_MAX_ATTEMPTS"),
            )
        return resources
