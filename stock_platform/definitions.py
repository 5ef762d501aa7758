"""The whole platform in one place: assets, jobs, and the resources bound to environment variables.

Definitions are built when Dagster loads the code location (`@dg.definitions`), not at import time, so an
optional setting can fall back to its documented default when its variable is unset, and tests can set
variables with monkeypatch before loading. Every variable is listed in the README.
"""


import os

import dagster as dg

from stock_platform.assets import load_stock_batch, raw_stock_files, top_companies
from stock_platform.io_managers import ParquetFramesIOManager
from stock_platform.jobs import stock_batch_job
from stock_platform.resources import PostgresResource, SourceBucket


def _optional(name: str) -> dict[str, dg.EnvVar]:
    """Bind a field to `name` only when it is set, so the field's documented default applies otherwise."""
    return {"value": dg.EnvVar(name)} if name in os.environ else {}


def _optional_int(name: str) -> dict[str, object]:
    return {"value": dg.EnvVar.int(name)} if name in os.environ else {}


def _fields(**bindings: dict[str, object]) -> dict[str, object]:
    return {field: b["value"] for field, b in bindings.items() if b}


@dg.definitions
def defs() -> dg.Definitions:
    bucket = SourceBucket(
        bucket=dg.EnvVar("STOCK_PLATFORM_SOURCE_BUCKET"),
        **_fields(
            stocks_prefix=_optional("STOCK_PLATFORM_STOCKS_PREFIX"),
            company_list_key=_optional("STOCK_PLATFORM_COMPANY_LIST_KEY"),
            output_key=_optional("STOCK_PLATFORM_OUTPUT_KEY"),
            processed_prefix=_optional("STOCK_PLATFORM_PROCESSED_PREFIX"),
            rejected_prefix=_optional("STOCK_PLATFORM_REJECTED_PREFIX"),
            max_concurrency=_optional_int("STOCK_PLATFORM_S3_CONCURRENCY"),
            max_attempts=_optional_int("STOCK_PLATFORM_S3_MAX_ATTEMPTS"),
        ),
    )
    postgres = PostgresResource(
        url=dg.EnvVar("STOCK_PLATFORM_DATABASE_URL"),
        **_fields(
            schema_name=_optional("STOCK_PLATFORM_DB_SCHEMA"),
            table=_optional("STOCK_PLATFORM_TABLE"),
        ),
    )
    return dg.Definitions(
        assets=[raw_stock_files, top_companies, load_stock_batch],
        jobs=[stock_batch_job],
        resources={
            "bucket": bucket,
            "postgres": postgres,
            "frames_io_manager": ParquetFramesIOManager(bucket=bucket),
        },
        # A batch is I/O-bound and already concurrent inside its step; a process per step would add seconds of
        # start-up to every run (shared/PERFORMANCE_NOTES.md).
        executor=dg.in_process_executor,
    )
