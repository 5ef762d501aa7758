"""The batch's assets: company list and raw S3 files -> company price frames -> PostgreSQL table -> Output CSV.

Thin: the work is pipeline.BatchRun (Dagster-free); this module maps its phases and its typed summary onto Dagster
events. The four batch assets are one subsettable step (`load_stock_batch`):

- one listing of the bucket: the company list (`top_companies`) is recorded from the listing the run loads from,
  so the two always agree (as a step of its own it listed the bucket again, ~0.2 s against moto);
- one pass: each file is downloaded and parsed once; its frame is encoded to Parquet once, spooled to local disk
  (spool.py: the run never holds every frame in memory), PUT from there and COPYed from there;
- the step records a materialization only for the companies it processed (`skippable=True` plus explicit
  per-partition `AssetMaterialization`s of the frames; a partitioned output would record every partition of the
  run), and one for the table when its transaction committed, listing the companies. A run has ~500 companies, so
  the frames are recorded in batches, each the frames stored since the last (one write to Dagster's storage per
  batch: stock_platform/event_log.py). Recording them still takes a while, so the rest happens behind it in a
  background thread: the load COPYs while the frames are PUT, commits as soon as every frame is stored (not yet
  recorded), then the table's checks and the extract run;
- a whole batch is one run (BackfillPolicy.single_run);
- any failure raises `dg.Failure` carrying the run's summary: what was processed, what was committed (nothing,
  after a rollback) and the table as it stands, with every secret scrubbed from the error text.
"""

import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from stock_platform.batch import checks
from stock_platform.batch.keys import (
    COMPANY_STOCK_PRICES,
    HISTORICAL_STOCK_DATA_CSV,
    HISTORICAL_STOCKS_DATA,
    TOP_COMPANIES,
)
from stock_platform.batch.metadata import COLUMN_SCHEMA, frame_metadata, summary_metadata, table_metadata
from stock_platform.batch.partitions import company_partitions
from stock_platform.batch.pipeline import BatchRun, Parsed, Plan
from stock_platform.batch.quality import QualityPolicy
from stock_platform.batch.sources import Batch, read_batch
from stock_platform.batch.summary import Commit, RunSummary, describe
from stock_platform.event_log import LoggedEvent, log_materializations
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import SourceBucket

INGEST, WAREHOUSE = "ingest", "warehouse"


@dg.observable_source_asset(
    partitions_def=company_partitions,
    group_name=INGEST,
    description="Raw per-company CSV files under Stocks/ in the source bucket. Data version: the S3 ETag.",
)
def raw_stock_files(context: dg.OpExecutionContext, bucket: SourceBucket) -> dg.DataVersionsByPartition:
    """Observe each company file's ETag, so the UI shows which companies changed since their last load."""
    batch = read_batch(bucket)
    has_partitions = context.has_partition_key_range or context.has_partition_key
    companies = context.partition_keys if has_partitions else batch.selection.companies
    return dg.DataVersionsByPartition(
        {c: dg.DataVersion(s.etag) for c in companies if (s := batch.source_of(c)) is not None}
    )


class BatchConfig(dg.Config):
    companies: list[str] = Field(
        default_factory=list,
        description=(
            "Load exactly these companies in this one run, whatever the run's partitions (a hand-picked set "
            "that a partition backfill would split into several runs). Empty: the run's company partitions, "
            "or every listed company when the run has none."
        ),
    )
    force_reload: bool = Field(
        default=False,
        description="Reprocess and reload companies whose file has the same ETag as at their last load.",
    )
    include_header: bool = Field(
        default=False, description="Write a header line in the Output CSV (the original had none)."
    )
    prune_unlisted: bool = Field(
        default=False,
        description=(
            "Remove, in one transaction, every company in the table that is no longer listed or has lost its file "
            "(its rows, its ledger entry and its frame). Off by default: the platform never deletes data silently."
        ),
    )


@dg.multi_asset(
    name="load_stock_batch",
    specs=[
        dg.AssetSpec(
            TOP_COMPANIES,
            skippable=True,
            group_name=INGEST,
            kinds={"s3"},
            description=(
                "Companies selected for loading: CompanyNames/top_companies.txt matched to the files under Stocks/, "
                "recorded from the same listing of the bucket that the run loads from."
            ),
        ),
        dg.AssetSpec(
            COMPANY_STOCK_PRICES,
            partitions_def=company_partitions,
            # Not top_companies: the list decides which company partitions exist, not their contents, and as a
            # dependency its re-materialization by every run would mark every unchanged company "Unsynced" in the UI.
            deps=[raw_stock_files],
            skippable=True,
            group_name=INGEST,
            # The schema is the same for every company and every run: declared once, not in each of the run's
            # ~1,000 events (where it was a third of what the event store wrote).
            metadata={"dagster/column_schema": COLUMN_SCHEMA},
            kinds={"pyarrow", "parquet", "s3"},
            description=(
                "Validated, typed daily prices of one company with daily_percent_change and value_change, stored "
                "as Parquet in the source bucket at Processed/company=COMPANY/prices.parquet. Rejected rows go to "
                "Rejected/RUN_ID/COMPANY.csv with their reason."
            ),
        ).with_io_manager_key("frames_io_manager"),
        dg.AssetSpec(
            HISTORICAL_STOCKS_DATA,
            # One table, one materialization per run that changed it, with the companies it committed in its
            # metadata: as ~500 partitions it cost a run ~500 events, 2.6 s of a 12 s run. Per-company status is
            # the frames' partitions.
            deps=[COMPANY_STOCK_PRICES],
            skippable=True,
            group_name=WAREHOUSE,
            metadata={"dagster/column_schema": COLUMN_SCHEMA},
            kinds={"postgres"},
            description=(
                "The PostgreSQL table data scientists query. Loading a company replaces exactly its rows; all "
                "companies of a run load with COPY in one transaction. Each materialization lists the companies "
                "it committed, with their rows and dates."
            ),
        ),
        dg.AssetSpec(
            HISTORICAL_STOCK_DATA_CSV,
            deps=[HISTORICAL_STOCKS_DATA],
            skippable=True,
            group_name=WAREHOUSE,
            kinds={"s3", "csv"},
            description=(
                "Output/historical_stock_data.csv in the source bucket: every loaded company in the table's column "
                "order, no header; rewritten whenever the table's version moved past the one it records. Its "
                "metadata is the run's summary."
            ),
        ),
    ],
    check_specs=[*checks.LIST_CHECK_SPECS, *checks.FRAME_CHECK_SPECS, *checks.TABLE_CHECK_SPECS],
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def load_stock_batch(
    context: dg.AssetExecutionContext,
    config: BatchConfig,
    bucket: SourceBucket,
    postgres: PostgresResource,
    quality: QualityPolicy,
) -> Iterator[dg.AssetMaterialization | LoggedEvent | dg.AssetCheckResult | dg.MaterializeResult]:  # type: ignore[type-arg]
    """Parse the run's companies, store their frames, load them into the table, and write the Output CSV.

    Subsettable, because the UI and asset backfills target these assets separately: frames (and the table); the
    table only (from the stored frames); the CSV only; or the table's checks only, evaluated against the table as
    it stands. A batch run selects all of them.
    """
    selected = _Selected.of(context)
    run = BatchRun(
        bucket,
        postgres,
        quality,
        context.run.run_id,
        force_reload=config.force_reload,
        include_header=config.include_header,
        log=context.log.info,
    )
    table_recorded = False
    try:
        batch = _read(run, bucket, selected)
        yield from _company_list(context, bucket, batch, selected)  # the run's one listing, recorded first
        if not selected.database:
            return  # the company list alone
        plan, parsed = _stage(context, config, run, selected, batch)
        if plan is not None and parsed is not None:
            gate = checks.rejected_share_result(parsed.gate)
            context.log.info(f"{gate.check_name}: {'passed' if gate.passed else 'FAILED'}")
            if selected.gate:
                yield gate
            run.ensure_gate(parsed)
            run.stage_frames(parsed)

        with ThreadPoolExecutor(1) as background, run.storing_frames() as puts:
            # Recording a frame per company is the step's longest task, so the rest happens behind it: the load
            # commits as soon as every frame is stored and every row COPYed, while this thread still records the
            # frames; the table's checks and the extract follow the commit in the same background thread.
            failed = threading.Event()
            loading = background.submit(_load, run, selected, config.prune_unlisted, puts.stored, failed)
            tail = background.submit(_finish, loading, run, selected)
            try:
                if plan is not None and parsed is not None:
                    # Every parsed file's: those rejected whole (which keep their previous frame) first, then the
                    # frames as their PUTs complete, each group stored as one batch (stock_platform/event_log.py).
                    rejected = sorted(c for c, f in parsed.files.items() if f.status == "rejected")
                    for group in itertools.chain([rejected] if rejected else [], puts.groups()):
                        yield from _frame_events(context, bucket, plan, parsed, group)
            except BaseException:
                failed.set()  # the load rolls back instead of committing
                raise
            tail.result()
        table_recorded = True
        yield from _table_event(run)
        yield from _table_check_results(context, run, selected)
        summary = run.summary
        for line in describe(summary):
            context.log.info(line)
        if selected.csv and summary.extract is not None:
            yield dg.AssetMaterialization(
                asset_key=HISTORICAL_STOCK_DATA_CSV,
                metadata={
                    "path": dg.MetadataValue.path(summary.extract.uri),
                    "link": dg.MetadataValue.url(bucket.link_for_uri(summary.extract.uri)),
                    "regenerated": summary.extract.regenerated,
                    "database": postgres.safe_url(),
                    **summary_metadata(summary, bucket),
                },
            )
    except Exception as error:  # noqa: BLE001 - every failure gets the summary and the scrubbed text
        summary = run.failed(error)
        if not table_recorded:
            yield from _table_event(run)  # a commit that happened before the failure is recorded all the same
        raise dg.Failure(
            description=_failure_text(summary),
            metadata=summary_metadata(summary, bucket),
        ) from None  # the scrubbed text replaces the original, which may quote a secret
    finally:
        run.close()


@dataclass(frozen=True)
class _Selected:
    """What this run of the step does, from the assets and checks it selects."""

    companies: bool
    frames: bool
    table: bool
    csv: bool
    checks: bool
    gate: bool  # record the rejected-share check

    @property
    def database(self) -> bool:
        """Whether the step works on the table, and so needs the database."""
        return self.frames or self.table or self.csv or self.checks

    @classmethod
    def of(cls, context: dg.AssetExecutionContext) -> "_Selected":
        keys, check_keys = context.selected_asset_keys, context.selected_asset_check_keys
        return cls(
            companies=TOP_COMPANIES in keys,
            frames=COMPANY_STOCK_PRICES in keys,
            table=HISTORICAL_STOCKS_DATA in keys,
            csv=HISTORICAL_STOCK_DATA_CSV in keys,
            checks=bool(checks.TABLE_CHECK_KEYS & check_keys),
            # Dagster records a check on a partitioned asset upstream in the same step only in a run with
            # partitions; a hand-picked (config) run enforces the gate all the same.
            gate=checks.FRAME_CHECK_KEY in check_keys and _has_partitions(context),
        )


def _read(run: BatchRun, bucket: SourceBucket, selected: _Selected) -> Batch | None:
    """Prepare the tables when the step touches them, and read the batch (the list and the files) once for every
    selected asset that needs it: the table's work with the companies it holds that are no longer listed (from the
    database), the company list alone from the bucket only."""
    if selected.database:
        run.prepare()
    if selected.frames or selected.table or selected.csv:
        return run.read()
    return read_batch(bucket) if selected.companies else None


def _stage(
    context: dg.AssetExecutionContext, config: "BatchConfig", run: BatchRun, selected: _Selected, batch: Batch | None
) -> tuple[Plan | None, Parsed | None]:
    """Plan the run's companies from the batch; parse their files when the frames are selected, or take the stored
    frames when only the table is. Nothing is written yet but the rejected rows."""
    if batch is None or not (selected.frames or selected.table):
        return None, None
    companies = _companies_of_run(context, config, batch.selection.companies)
    plan = run.plan(batch, companies)
    if not selected.frames:
        run.use_stored_frames(plan, companies)
        return plan, None
    return plan, run.parse(plan)


def _table_check_results(
    context: dg.AssetExecutionContext, run: BatchRun, selected: _Selected
) -> Iterator[dg.AssetCheckResult]:
    if not selected.checks or run.findings is None:
        return
    for result in checks.table_check_results(run.findings):
        if not result.passed:
            context.log.warning(f"Check {result.check_name} failed: {result.metadata['offending_rows'].value}")
        yield result


def _load(run: BatchRun, selected: _Selected, prune: bool, stored: "Future[None]", failed: threading.Event) -> None:
    """In the background thread: load, committing once every frame is stored (unless the step failed), then
    prune."""
    if not selected.table:
        return

    def ready() -> None:
        stored.result()  # a failed PUT raises here: the load rolls back
        if failed.is_set():
            raise RuntimeError("the step failed before the load committed")

    run.load(before_commit=ready)
    if prune:
        run.prune(run.summary.stale.names)


def _finish(loading: "Future[None]", run: BatchRun, selected: _Selected) -> RunSummary:
    """The tail of the run, in the background thread right after the load: gather the checks' evidence, export."""
    loading.result()
    if selected.checks:
        run.check()
    if selected.csv:
        run.export()
    return run.finish()


def _has_partitions(context: dg.AssetExecutionContext) -> bool:
    return bool(context.has_partition_key or context.has_partition_key_range)


def _companies_of_run(context: dg.AssetExecutionContext, config: BatchConfig, listed: list[str]) -> list[str]:
    if config.companies:
        return sorted({c.lower() for c in config.companies})
    if _has_partitions(context):
        return sorted(context.partition_keys)
    return listed


def _frame_events(
    context: dg.AssetExecutionContext, bucket: SourceBucket, plan: Plan, parsed: Parsed, companies: list[str]
) -> list[LoggedEvent]:
    """The companies' frame materializations, recorded as one batch."""
    return log_materializations(
        context,
        [
            dg.AssetMaterialization(
                asset_key=COMPANY_STOCK_PRICES,
                partition=company,
                metadata=frame_metadata(bucket, plan.todo[company], parsed.files[company], parsed.rejects.get(company)),
            )
            for company in companies
        ],
    )


def _table_event(run: BatchRun) -> Iterator[dg.AssetMaterialization]:
    """The table's materialization, when the run committed a change to it (and only after the commit)."""
    commit: Commit | None = run.summary.commit
    if commit is None:
        return
    yield dg.AssetMaterialization(
        asset_key=HISTORICAL_STOCKS_DATA, metadata=table_metadata(commit, run.frame_stats, run.summary.table)
    )


def _company_list(
    context: dg.AssetExecutionContext, bucket: SourceBucket, batch: Batch | None, selected: _Selected
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    """top_companies' materialization when selected, from the listing the run loads from (so the two agree)."""
    if batch is None or not selected.companies:
        return
    selection = batch.selection
    if selection.missing:
        context.log.warning(f"{len(selection.missing)} listed companies have no file: {list(selection.missing)[:20]}")
    if selection.ambiguous:
        context.log.warning(f"Ambiguous (several files, not loaded): {dict(selection.ambiguous)}")
    # The same selection is the same data version: the UI tells a changed list from a re-read one.
    selected_json = json.dumps([selection.companies, list(selection.missing), sorted(selection.ambiguous)])
    yield dg.MaterializeResult(
        asset_key=TOP_COMPANIES,
        data_version=dg.DataVersion(hashlib.sha256(selected_json.encode()).hexdigest()[:16]),
        metadata={
            "source": dg.MetadataValue.url(bucket.link(bucket.company_list_key)),
            "entries": len(batch.entries),
            "companies_matched": len(selection.companies),
            "companies_missing": len(selection.missing),
            "missing": dg.MetadataValue.json(list(selection.missing)),
            "files_not_listed": selection.unlisted,
            "files_with_invalid_names": dg.MetadataValue.json(list(selection.invalid_names)),
            "ambiguous": dg.MetadataValue.json({k: list(v) for k, v in selection.ambiguous.items()}),
        },
        check_results=[checks.listed_present_result(list(selection.missing))],
    )


def _failure_text(summary: RunSummary) -> str:
    return "\n".join([summary.error or "The batch failed.", *describe(summary)])
