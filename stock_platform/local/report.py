"""Run one batch on a Dagster instance and report what it did (used by `make run`, the tests and benchmarks)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from stock_platform.batch.assets import load_stock_batch
from stock_platform.definitions import defs
from stock_platform.batch.jobs import stock_batch_job
from stock_platform.batch.partitions import company_partitions, partition_range_tags, sync_company_partitions
from stock_platform.notifications.sensors import notify, run_summary
from stock_platform.batch.summary import root_error
from stock_platform.resources.postgres import PostgresResource
from stock_platform.batch.sources import read_batch
from stock_platform.resources.s3 import SourceBucket

SAMPLE_QUERY = """
SELECT company_name, count(*) AS trading_days, min(stock_date) AS first_day, max(stock_date) AS last_day,
       round(avg(daily_percent_change)::numeric, 4) AS avg_daily_pct
FROM {table} GROUP BY company_name ORDER BY trading_days DESC, company_name LIMIT 5
"""


@dataclass
class BatchOutcome:
    success: bool
    run_id: str
    elapsed_s: float
    summary: dict[str, Any]  # historical_stock_data_csv's metadata: the run's summary and the Output CSV
    table: str = ""
    sample: pd.DataFrame | None = None
    error: str | None = None
    partitions_added: list[str] = field(default_factory=list)
    partitions_deleted: list[str] = field(default_factory=list)
    notification_id: str | None = None  # SNS message id, when a topic is configured


def resolved_resources(definitions: dg.Definitions) -> tuple[SourceBucket, PostgresResource]:
    """The bucket and database resources with their environment variables resolved, for use outside a run."""
    with dg.build_resources(
        {"bucket": definitions.resources["bucket"], "postgres": definitions.resources["postgres"]}
    ) as resources:
        return resources.bucket, resources.postgres


def execute_batch(
    force_reload: bool = False,
    companies: list[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = False,
) -> BatchOutcome:
    """Sync the company partitions and materialize the whole graph in one in-process run."""
    definitions = defs()
    instance = instance or dg.DagsterInstance.get()
    bucket, postgres = resolved_resources(definitions)
    added, deleted = sync_company_partitions(instance, read_batch(bucket).selection)
    # One run over every company partition, or (hand-picked companies) a run without partitions.
    tags = {} if companies else partition_range_tags(instance.get_dynamic_partitions(company_partitions.name))
    job = definitions.resolve_job_def(stock_batch_job.name)
    started = time.monotonic()
    result = job.execute_in_process(
        instance=instance,
        tags=tags,
        run_config={
            "ops": {load_stock_batch.op.name: {"config": {"force_reload": force_reload, "companies": companies or []}}}
        },
        raise_on_error=raise_on_error,
    )
    elapsed = time.monotonic() - started
    error = None
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        error = root_error(failures[0].step_failure_data.error) if failures else "run failed"
    schema, table = postgres.target
    sample_df = None
    if result.success:
        sample_df = pd.read_sql(SAMPLE_QUERY.format(table=f'"{schema}"."{table}"'), postgres.engine())
    notification_id = None
    if "sns" in definitions.resources:
        # What notify_success_sensor / notify_failure_sensor do when the daemon sees the run finish.
        with dg.build_resources({"sns": definitions.resources["sns"]}) as resources:
            run = instance.get_run_by_id(result.run_id)
            notification_id = notify(instance, run, resources.sns, logging.getLogger("stock_platform"))
    return BatchOutcome(
        notification_id=notification_id,
        success=result.success,
        run_id=result.run_id,
        elapsed_s=elapsed,
        summary=run_summary(instance, result.run_id),
        table=f"{schema}.{table} at {postgres.safe_url()}",
        sample=sample_df,
        error=error,
        partitions_added=added,
        partitions_deleted=deleted,
    )


def print_report(outcome: BatchOutcome) -> None:
    m = outcome.summary
    details = m.get("summary") or {}
    status = "SUCCESS" if outcome.success else "FAILURE"
    reconciles = m.get("rows_read", 0) == m.get("rows_loaded", 0) + m.get("rows_rejected", 0) + m.get("duplicates_dropped", 0)
    lines = [
        "",
        f"== stock_batch_job run {outcome.run_id}: {status} in {outcome.elapsed_s:.1f}s",
        f"Companies in the run:  {m.get('companies_in_run', 0)} "
        f"(partitions added {len(outcome.partitions_added)}, removed {len(outcome.partitions_deleted)})",
        f"  loaded {m.get('companies_loaded', 0)}, unchanged since last load {m.get('companies_unchanged', 0)}, "
        f"empty {m.get('companies_empty', 0)}, rejected whole {m.get('companies_rejected', 0)}",
        f"  empty:    {', '.join(details.get('empty', [])) or '-'}",
        f"  rejected: {', '.join(details.get('rejected', [])) or '-'}",
        f"  missing (listed, no file): {', '.join(details.get('missing', [])) or '-'}",
        f"Rows read {m.get('rows_read', 0)} = loaded {m.get('rows_loaded', 0)} + rejected {m.get('rows_rejected', 0)} "
        f"+ duplicates dropped {m.get('duplicates_dropped', 0)}  ({'reconciles' if reconciles else 'DOES NOT RECONCILE'})",
        f"Rejected rows:  {m.get('rejects') or 'none'}",
        f"Table:          {outcome.table} ({m.get('table_rows', '?')} rows, {m.get('table_companies', '?')} companies)",
    ]
    if m.get("path"):
        lines.append(
            f"Output CSV:     {m['path']} ({'rewritten' if m.get('regenerated') else 'unchanged'}; "
            f"{m.get('table_min_date')} .. {m.get('table_max_date')})"
        )
    if outcome.error:
        lines.append(f"Error:          {outcome.error}")
    if outcome.sample is not None:
        lines.append("Sample query (top 5 companies by trading days):")
        lines.append(outcome.sample.to_string(index=False))
    print("\n".join(lines))
