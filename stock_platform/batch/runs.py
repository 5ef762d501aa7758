"""Run a batch from the command line: bring the company partitions in line, execute `stock_batch_job` in this
process over all of them, a range, or a hand-picked set, and read back the run's typed summary.

The run is the same job, step and summary as a run the sensor or the UI launches; only the launch differs. Its
notification goes out through the same `notify` the run-status sensors use, which sends at most one per run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from stock_platform.batch.assets import load_stock_batch
from stock_platform.batch.jobs import stock_batch_job
from stock_platform.batch.partitions import company_partitions, partition_range_tags, sync_company_partitions
from stock_platform.batch.sources import read_batch
from stock_platform.batch.summary import RunSummary, root_error
from stock_platform.notifications.sensors import notify, run_summary
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


def sync_partitions(definitions: dg.Definitions, instance: dg.DagsterInstance) -> tuple[list[str], list[str]]:
    """Make the `company` partitions equal the listed companies with a file (what the marker sensor does)."""
    with dg.build_resources({"bucket": definitions.resources["bucket"]}) as resources:
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
) -> BatchRunResult:
    """Sync the partitions and execute one batch run: every partition, `partition_range` (first, last), or the
    hand-picked `companies` (one run without partitions)."""
    try:
        added, deleted = sync_partitions(definitions, instance)
    except Exception:  # noqa: BLE001 - as the sensor does: the run still starts, fails on it, says why, notifies
        added, deleted = [], []
    if companies:
        tags: dict[str, str] = {}
    elif partition_range:
        tags = partition_range_tags(list(partition_range))
    else:
        tags = partition_range_tags(instance.get_dynamic_partitions(company_partitions.name))
    config: dict[str, Any] = {
        "force_reload": force_reload,
        "companies": companies or [],
        "prune_unlisted": prune_unlisted,
    }
    result = definitions.resolve_job_def(stock_batch_job.name).execute_in_process(
        instance=instance,
        tags=tags,
        run_config={"ops": {load_stock_batch.op.name: {"config": config}}},
        raise_on_error=raise_on_error,
    )
    error = None
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        data = failures[0].step_failure_data if failures else None
        error = root_error(data.error) if data is not None else "the run failed before any step ran"
    notification_id = None
    if notify_sns and "sns" in definitions.resources:
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        with dg.build_resources({"sns": definitions.resources["sns"]}) as resources:
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
