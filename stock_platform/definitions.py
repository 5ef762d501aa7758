"""The whole platform in one place: assets, jobs, sensors, and the resources bound to environment variables.

Definitions are built when Dagster loads the code location (`@dg.definitions`), not at import time, so an
optional setting can fall back to its documented default when its variable is unset, and tests can set
variables with monkeypatch before loading. Every variable is listed in the README.
"""

import os

import dagster as dg

from stock_platform.assets import load_stock_batch, raw_stock_files, top_companies
from stock_platform.io_managers import ParquetFramesIOManager
from stock_platform.jobs import stock_batch_job
from stock_platform.notifications import build_notification_sensors
from stock_platform.resources import MonitoredBucket, PostgresResource, QualityPolicy, SNSResource, SourceBucket
from stock_platform.sensors import build_marker_sensor


def _optional(**bindings: str) -> dict[str, dg.EnvVar]:
    """Bind each field to its variable only when the variable is set, so the field's default applies otherwise."""
    return {field: dg.EnvVar(name) for field, name in bindings.items() if name in os.environ}


def _optional_int(**bindings: str) -> dict[str, dg.EnvVar]:
    return {field: dg.EnvVar.int(name) for field, name in bindings.items() if name in os.environ}


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


@dg.definitions
def defs() -> dg.Definitions:
    # Settings that shape definitions rather than resources (sensor intervals, default status) cannot be
    # EnvVars; they are read here, when the code location loads, never at import time.
    interval = int(os.environ.get("STOCK_PLATFORM_SENSOR_INTERVAL_SECONDS", "30"))
    status = (
        dg.DefaultSensorStatus.RUNNING
        if _flag("STOCK_PLATFORM_SENSORS_ENABLED", True)
        else dg.DefaultSensorStatus.STOPPED
    )
    s3_tuning = _optional_int(max_concurrency="STOCK_PLATFORM_S3_CONCURRENCY", max_attempts="STOCK_PLATFORM_S3_MAX_ATTEMPTS")
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
    postgres = PostgresResource(
        url=dg.EnvVar("STOCK_PLATFORM_DATABASE_URL"),
        **_optional(schema_name="STOCK_PLATFORM_DB_SCHEMA", table="STOCK_PLATFORM_TABLE"),
    )
    resources: dict[str, object] = {
        "quality": QualityPolicy(
            max_rejected_share=float(os.environ.get("STOCK_PLATFORM_MAX_REJECTED_SHARE", "0.05")),
            **_optional_int(max_file_bytes="STOCK_PLATFORM_MAX_FILE_BYTES"),
        ),
        "bucket": bucket,
        "monitored": monitored,
        "postgres": postgres,
        "frames_io_manager": ParquetFramesIOManager(bucket=bucket),
    }
    sensors = [build_marker_sensor(stock_batch_job, interval, status)]
    # Notifications need a topic; without STOCK_PLATFORM_SNS_TOPIC_ARN the platform runs silently.
    if "STOCK_PLATFORM_SNS_TOPIC_ARN" in os.environ:
        resources["sns"] = SNSResource(
            topic_arn=dg.EnvVar("STOCK_PLATFORM_SNS_TOPIC_ARN"),
            **_optional(subject_prefix="STOCK_PLATFORM_NOTIFY_PREFIX", ui_base_url="STOCK_PLATFORM_UI_BASE_URL"),
            **_optional_int(max_attempts="STOCK_PLATFORM_SNS_MAX_ATTEMPTS"),
        )
        sensors += build_notification_sensors([stock_batch_job], interval, status)
    return dg.Definitions(
        assets=[raw_stock_files, top_companies, load_stock_batch],
        jobs=[stock_batch_job],
        sensors=sensors,
        resources=resources,
        # A batch is I/O-bound and already concurrent inside its step; a process per step would add seconds of
        # start-up to every run (shared/PERFORMANCE_NOTES.md).
        executor=dg.in_process_executor,
    )
