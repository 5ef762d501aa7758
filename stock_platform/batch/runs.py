"""Run a batch from the command line: bring the company partitions in line, execute `stock_batch_job` in this
process over all of them, a range, or a hand-picked set, and read back the run's typed summary.

The run is the same job, step and summary as a run the sensor or the UI launches; only the launch differs. Its
notification goes out through the same `notify` the run-status sensors use, which sends at most one per run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from stock_platform.batch import warehouse
from stock_platform.batch.assets import load_stock_batch
from stock_platform.batch.jobs import stock_batch_job, table_checks_job
from stock_platform.batch.partitions import COMPANY_PARTITIONS, partition_range_tags, sync_company_partitions
from stock_platform.batch.sources import read_batch
from stock_platform.batch.summary import RunSummary, StaleCompanies, root_error
from stock_platform.notifications.sensors import notify, run_summary
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import SourceBucket
from stock_platform.resources.sns import SNSResource


@dataclass
class BatchRunResult:
    run_id: str
    success: bool
    summary: RunSummary | None
    error: str | None = None
    partitions_added: list[str] = field(default_factory=list)
    partitions_deleted: list[str] = field(default_factory=list)
    notification_id: str | None = None  # SNS message id, when a topic is configured and notify=True


def _resource(definitions: dg.Definitions, key: str) -> Any:
    resources = definitions.resources or {}
    return resources.get(key)


@contextmanager
def source_bucket(definitions: dg.Definitions) -> Iterator[SourceBucket]:
    """The source bucket resource with its settings resolved (for commands that read the bucket directly)."""
    with dg.build_resources({"bucket": _resource(definitions, "bucket")}) as resources:
        yield resources.bucket


def sync_partitions(definitions: dg.Definitions, instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """Make the `company` partitions equal the listed companies with a file (what the marker sensor does)."""
    with dg.build_resources({"bucket": _resource(definitions, "bucket")}) as resources:
        bucket: SourceBucket = resources.bucket
        return sync_company_partitions(instance, read_batch(bucket).selection)


def run_batch(
    definitions: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    companies: list[str] | None = None,
    partition_range: tuple[str, str] | None = None,
    force_reload: bool = False,
    prune_unlisted: bool = False,
    notify_sns: bool = False,
    raise_on_error: bool = False,
    tags: dict[str, str] | None = None,
) -> BatchRunResult:
    """Sync the partitions and execute one batch run: every partition, `partition_range` (first, last), or the
    hand-picked `companies` (one run without partitions)."""
    try:
        added, deleted = sync_partitions(definitions, instance)
    except Exception:  # noqa: BLE001 - as the sensor does: the run still starts, fails on it, says why, notifies
        added, deleted = [], []
    if companies:
        run_tags: dict[str, str] = {}
    elif partition_range:
        run_tags = partition_range_tags(list(partition_range))
    else:
        run_tags = partition_range_tags(instance.get_dynamic_partitions(COMPANY_PARTITIONS))
    config: dict[str, Any] = {
        "force_reload": force_reload,
        "companies": companies or [],
        "prune_unlisted": prune_unlisted,
    }
    result = definitions.resolve_job_def(stock_batch_job.name).execute_in_process(
        instance=instance,
        tags={**run_tags, **(tags or {})},
        run_config={
            "ops": {load_stock_batch.op.name: {"config": config}},
            # The terminal shows the run's INFO progress lines; Dagster's per-event DEBUG lines (one
            # "Materialized value ..." per company and asset) stay in the run's event log, where the UI shows them.
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
        raise_on_error=raise_on_error,
    )
    error = None
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        data = failures[0].step_failure_data if failures else None
        error = root_error(data.error) if data is not None else "the run failed before any step ran"
    notification_id = None
    sns_resource = _resource(definitions, "sns")
    if notify_sns and sns_resource is not None:
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        with dg.build_resources({"sns": sns_resource}) as resources:
            sns: SNSResource = resources.sns
            notification_id = notify(instance, run, sns, logging.getLogger("stock_platform"))
    return BatchRunResult(
        run_id=result.run_id,
        success=result.success,
        summary=run_summary(instance, result.run_id),
        error=error,
        partitions_added=added,
        partitions_deleted=deleted,
        notification_id=notification_id,
    )


def stale_companies(definitions: dg.Definitions) -> StaleCompanies:
    """Companies in the table that are no longer listed or have lost their file (what `prune_unlisted` removes)."""
    with dg.build_resources(
        {"bucket": _resource(definitions, "bucket"), "postgres": _resource(definitions, "postgres")}
    ) as resources:
        bucket: SourceBucket = resources.bucket
        postgres: PostgresResource = resources.postgres
        listed = read_batch(bucket).selection.companies
        with postgres.connect() as conn:
            return warehouse.stale_companies(conn, warehouse.Target(postgres.schema_name, postgres.table), listed)


def run_table_checks(definitions: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, tuple[bool, int]]:
    """Evaluate the table's checks against the table as it stands: check name -> (passed, offending rows)."""
    result = definitions.resolve_job_def(table_checks_job.name).execute_in_process(instance=instance)
    outcomes: dict[str, tuple[bool, int]] = {}
    for event in result.all_events:
        evaluation = event.event_specific_data
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            offending = evaluation.metadata.get("offending_rows")
            count = offending.value if offending is not None else 0
            outcomes[evaluation.check_name] = (evaluation.passed, count if isinstance(count, int) else 0)
    return outcomes
