"""`make run`'s batch and report: the CLI's run (batch/runs.py) on the local stack, printed for a person."""

from __future__ import annotations

import os

import dagster as dg
import pandas as pd

from stock_platform.batch.runs import BatchRunResult, run_batch
from stock_platform.batch.summary import describe
from stock_platform.definitions import defs
from stock_platform.resources.postgres import PostgresResource

SAMPLE_QUERY = """
SELECT company_name, count(*) AS trading_days, min(stock_date) AS first_day, max(stock_date) AS last_day,
       round(avg(daily_percent_change)::numeric, 4) AS avg_daily_pct
FROM {table} GROUP BY company_name ORDER BY trading_days DESC, company_name LIMIT 5
"""


def execute_batch(
    force_reload: bool = False,
    companies: list[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    partition_range: tuple[str, str] | None = None,
    raise_on_error: bool = False,
    prune_unlisted: bool = False,
) -> BatchRunResult:
    """One batch run over every company partition (or the hand-picked `companies`), notified like any other."""
    return run_batch(
        defs(),
        instance or dg.DagsterInstance.get(),
        companies=companies,
        partition_range=partition_range,
        force_reload=force_reload,
        prune_unlisted=prune_unlisted,
        notify_sns=True,
        raise_on_error=raise_on_error,
    )


def print_report(result: BatchRunResult, elapsed_s: float | None = None) -> None:
    postgres = PostgresResource(
        url=os.environ["STOCK_PLATFORM_DATABASE_URL"],
        schema_name=os.environ.get("STOCK_PLATFORM_DB_SCHEMA", "public"),
        table=os.environ.get("STOCK_PLATFORM_TABLE", "historical_stocks_data"),
    )
    status = "SUCCESS" if result.success else "FAILURE"
    lines = [
        "",
        f"== stock_batch_job run {result.run_id}: {status}" + (f" in {elapsed_s:.1f}s" if elapsed_s else "") + " "
        f"(partitions added {len(result.partitions_added)}, removed {len(result.partitions_deleted)})",
        f"Table: {postgres.schema_name}.{postgres.table} at {postgres.safe_url()}",
    ]
    if result.summary is not None:
        lines += describe(result.summary)
    if result.error:
        lines.append(f"Error: {result.error}")
    print("\n".join(lines))
    if result.success:
        table = f'"{postgres.schema_name}"."{postgres.table}"'
        sample = pd.read_sql(SAMPLE_QUERY.format(table=table), postgres.engine())
        print("Sample query (top 5 companies by trading days):")
        print(sample.to_string(index=False))
