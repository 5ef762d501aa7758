"""The asset graph: company list and raw S3 files -> company price frames -> PostgreSQL table -> Output CSV.

Assets are thin: they map Dagster context and resources onto selection.py, transforms.py, warehouse.py and
io_managers.py. The three batch assets are one step (`load_stock_batch`, a multi-asset):

- one pass: each file is downloaded and parsed once and its frame goes to Parquet and to COPY from memory,
  instead of being re-read from S3 by the next step;
- the step records a materialization only for the companies it actually processed. A partitioned output
  would make Dagster record one for every partition of the run (about 18 ms of event storage each on SQLite,
  most of a no-change run); `skippable=True` plus explicit per-partition `AssetMaterialization`s avoids that,
  and the table load runs in a background thread while those events are written;
- a whole batch is one run (BackfillPolicy.single_run); S3 requests and parsing go through a thread pool.
"""

import datetime
import tempfile
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg
import pyarrow as pa
from pydantic import Field

from stock_platform.batch import checks, warehouse
from stock_platform.batch import summary as reporting
from stock_platform.batch.frames import read_frames, write_frames
from stock_platform.batch.keys import COMPANY_STOCK_PRICES, HISTORICAL_STOCK_DATA_CSV, HISTORICAL_STOCKS_DATA, TOP_COMPANIES
from stock_platform.batch.partitions import company_partitions
from stock_platform.batch.summary import EMPTY, LOADED, MISSING_FILE, REJECTED, UNCHANGED, BatchSummary
from stock_platform.batch.quality import QualityPolicy
from stock_platform.batch.sources import Batch, read_batch
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import S3Object, SourceBucket
from stock_platform.batch.transforms import ParsedFile, parse_stock_csv, rejects_to_csv, too_large

INGEST, WAREHOUSE = "ingest", "warehouse"

@dg.asset(key=TOP_COMPANIES, group_name=INGEST, kinds={"s3"}, check_specs=checks.LIST_CHECK_SPECS)
def top_companies(context: dg.AssetExecutionContext, bucket: SourceBucket) -> dg.MaterializeResult:
    """Companies selected for loading: CompanyNames/top_companies.txt matched to the files under Stocks/."""
    batch = read_batch(bucket)
    selection = batch.selection
    if selection.missing:
        context.log.warning(f"{len(selection.missing)} listed companies have no file: {list(selection.missing)[:20]}")
    return dg.MaterializeResult(
        metadata={
            "source": dg.MetadataValue.path(bucket.uri(bucket.company_list_key)),
            "entries": len(batch.entries),
            "companies_matched": len(selection.files),
            "companies_missing": len(selection.missing),
            "missing": dg.MetadataValue.json(list(selection.missing)),
            "files_not_listed": selection.unlisted,
            "files_with_invalid_names": dg.MetadataValue.json(list(selection.invalid_names)),
            "ambiguous": dg.MetadataValue.json({k: list(v) for k, v in selection.ambiguous.items()}),
        },
        check_results=[checks.listed_present_result(list(selection.missing))],
    )


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
    include_header: bool = Field(default=False, description="Write a header line in the Output CSV (the original had none).")


@dg.multi_asset(
    name="load_stock_batch",
    specs=[
        dg.AssetSpec(
            COMPANY_STOCK_PRICES,
            partitions_def=company_partitions,
            deps=[top_companies, raw_stock_files],
            skippable=True,
            group_name=INGEST,
            kinds={"pyarrow", "parquet", "s3"},
            description=(
                "Validated, typed daily prices of one company with daily_percent_change and value_change, stored "
                "as Parquet in the source bucket at Processed/company=COMPANY/prices.parquet. Rejected rows go to "
                "Rejected/RUN_ID/COMPANY.csv with their reason."
            ),
        ).with_io_manager_key("frames_io_manager"),
        dg.AssetSpec(
            HISTORICAL_STOCKS_DATA,
            partitions_def=company_partitions,
            deps=[COMPANY_STOCK_PRICES],
            skippable=True,
            group_name=WAREHOUSE,
            kinds={"postgres"},
            description=(
                "The PostgreSQL table data scientists query, one partition per company. Loading a company "
                "replaces exactly its rows; all companies of a run load with COPY in one transaction."
            ),
        ),
        dg.AssetSpec(
            HISTORICAL_STOCK_DATA_CSV,
            deps=[HISTORICAL_STOCKS_DATA],
            # Recorded as an explicit AssetMaterialization like the others: Dagster's provenance for an output
            # computes the partitioned parents' range, which a hand-picked (config) run does not have.
            skippable=True,
            group_name=WAREHOUSE,
            kinds={"s3", "csv"},
            description=(
                "Output/historical_stock_data.csv in the source bucket: every loaded company in the table's column "
                "order, no header; regenerated whenever a run changes the table. Its metadata is the run's summary."
            ),
        ),
    ],
    check_specs=[*checks.FRAME_CHECK_SPECS, *checks.TABLE_CHECK_SPECS],
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def load_stock_batch(
    context: dg.AssetExecutionContext,
    config: BatchConfig,
    bucket: SourceBucket,
    postgres: PostgresResource,
    quality: QualityPolicy,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckResult]:
    """Parse the run's companies, store their frames, load them into the table, and write the Output CSV.

    Subsettable, because the UI and asset backfills target these assets separately (partitions of the frames and
    the table in one run, the unpartitioned CSV in another): frames only; the table only (from the stored
    frames); or the CSV only. A batch run selects all three.
    """
    selected = context.selected_asset_keys
    do_frames, do_table = COMPANY_STOCK_PRICES in selected, HISTORICAL_STOCKS_DATA in selected
    do_csv = HISTORICAL_STOCK_DATA_CSV in selected
    summary = BatchSummary()
    frames: dict[str, pa.Table] = {}
    frame_events: list[dg.AssetMaterialization] = []
    if do_frames or do_table:
        batch = read_batch(bucket)
        companies = _companies_of_run(context, config, batch)
        with postgres.connect() as conn:
            loaded = warehouse.loaded_etags(conn, *postgres.target)
        summary = BatchSummary(missing=batch.selection.missing, companies_in_run=len(companies))
        if do_frames:
            frames, frame_events = yield from _process_files(
                context, config, bucket, quality, batch, companies, loaded, summary
            )
        else:
            frames = _stored_frames(context, config, bucket, companies, loaded, summary)

    with ThreadPoolExecutor(1) as background:
        # The frames are stored; now the table load, its checks and the extract run in the background while this
        # thread records one materialization per company (~18 ms of event storage each): they overlap instead of
        # adding up. The table's own materializations are recorded only once its transaction has committed.
        tail = background.submit(
            _load_and_export, postgres, bucket, config, frames if do_table else {}, context.run.run_id, do_csv,
            table_changed=bool(frames) if do_table else True,  # a CSV-only run follows a load in another run
        )
        yield from frame_events
        outcome = tail.result()

    if outcome.load is not None:
        result = outcome.load
        summary.load_seconds = outcome.load_seconds
        context.log.info(
            f"{result.strategy}: {result.rows_inserted} rows inserted, {result.rows_updated} updated, "
            f"{result.rows_deleted} deleted, {result.rows_unchanged} unchanged; table holds {result.table_rows}"
        )
        for company, frame in sorted(frames.items()):
            yield dg.AssetMaterialization(
                asset_key=HISTORICAL_STOCKS_DATA,
                partition=company,
                metadata={"rows_loaded": frame.num_rows, **_date_metadata(frame)},
            )
        for check in checks.table_check_results(outcome.findings):
            if not check.passed:
                context.log.warning(f"Check {check.check_name} failed: {check.metadata['offending_rows'].value} rows")
            if _records_check(context, check):
                yield check
    if outcome.output is not None:
        yield _output_materialization(context, bucket, postgres, summary, outcome.output)


@dataclass
class _Tail:
    load: warehouse.LoadResult | None = None
    load_seconds: float | None = None
    findings: dict[str, warehouse.Finding] = field(default_factory=dict)
    output: dict[str, object] | None = None


def _load_and_export(
    postgres: PostgresResource,
    bucket: SourceBucket,
    config: BatchConfig,
    frames: dict[str, pa.Table],
    run_id: str,
    do_csv: bool,
    table_changed: bool,
) -> _Tail:
    """Load the frames (one transaction), gather the checks' evidence, rewrite the extract. No Dagster calls."""
    schema, table = postgres.target
    tail = _Tail()
    if frames:
        started = time.perf_counter()
        with postgres.connect() as conn:
            tail.load = warehouse.replace_companies(conn, schema, table, frames, run_id)
        tail.load_seconds = round(time.perf_counter() - started, 3)
        with postgres.connect() as conn:
            tail.findings = warehouse.quality_findings(conn, schema, table, today=datetime.date.today())
    if do_csv:
        tail.output = _export_output_csv(config, bucket, postgres, regenerate=table_changed)
    return tail


def _process_files(
    context: dg.AssetExecutionContext,
    config: BatchConfig,
    bucket: SourceBucket,
    quality: QualityPolicy,
    batch: Batch,
    companies: list[str],
    loaded: dict[str, str],
    summary: BatchSummary,
) -> Generator[dg.AssetCheckResult, None, tuple[dict[str, pa.Table], list[dg.AssetMaterialization]]]:
    """Download, parse and store the changed files; return their frames and (to record) their materializations.

    Fails, before anything reaches the table, when more rows are rejected than the quality policy allows.
    """
    todo: dict[str, S3Object] = {}
    for company in companies:
        source = batch.source_of(company)
        if source is None:
            summary.add(company, MISSING_FILE, {})
        elif not config.force_reload and loaded.get(company) == source.etag:
            summary.add(company, UNCHANGED, {})
        else:
            todo[company] = source
    context.log.info(f"{len(companies)} companies in the run: {len(todo)} to process, {len(companies) - len(todo)} not")

    parsed = _fetch_and_parse(bucket, todo, quality.max_file_bytes)
    rejects = _write_rejects(bucket, context.run.run_id, parsed)
    frames = {
        company: result.prices.replace_schema_metadata(
            {warehouse.SOURCE_KEY: todo[company].key.encode(), warehouse.SOURCE_ETAG: todo[company].etag.encode()}
        )
        for company, result in parsed.items()
        if result.status != REJECTED  # a file rejected whole keeps the company's previous rows and frame
    }
    events = []
    for company, result in sorted(parsed.items()):
        summary.add(company, result.status, reporting.company_counts(result), rejects.get(company))
        events.append(
            dg.AssetMaterialization(
                asset_key=COMPANY_STOCK_PRICES,
                partition=company,
                metadata=_frame_metadata(bucket, todo[company], result, rejects.get(company)),
            )
        )
    if rejects:
        context.log.warning(
            f"{summary.rows_rejected} rows rejected in {len(rejects)} files: "
            f"{bucket.uri(bucket.rejects_prefix(context.run.run_id))}"
        )
    worst = dict(
        sorted(
            ((c, p.rows_rejected / p.rows_read) for c, p in parsed.items() if p.rows_read and p.rows_rejected),
            key=lambda item: -item[1],
        )[:20]
    )
    check = checks.rejected_share_result(summary.rows_read, summary.rows_rejected, quality.max_rejected_share, worst)
    if _records_check(context, check):
        yield check
    if not check.passed:  # neither the frames nor the table are touched; the rejects are kept as evidence
        raise dg.Failure(
            description=(
                f"{summary.rows_rejected} of {summary.rows_read} rows rejected "
                f"({check.metadata['rejected_share'].value:.2%}), above the {quality.max_rejected_share:.2%} threshold: "
                f"the table and the frames were not touched. Rejects: {bucket.uri(bucket.rejects_prefix(context.run.run_id))}"
            ),
            metadata={"worst_companies": dg.MetadataValue.json(worst)},
        )
    # Stored before anything reaches the table: the ledger will say these files are loaded, so their frames
    # must already exist.
    write_frames(bucket, frames)
    return frames, events


def _stored_frames(
    context: dg.AssetExecutionContext,
    config: BatchConfig,
    bucket: SourceBucket,
    companies: list[str],
    loaded: dict[str, str],
    summary: BatchSummary,
) -> dict[str, pa.Table]:
    """The table alone: load the companies' stored Parquet frames that are not already in the table."""
    stored = read_frames(bucket, companies)
    frames: dict[str, pa.Table] = {}
    for company in companies:
        frame = stored.get(company)
        etag = (frame.schema.metadata or {}).get(warehouse.SOURCE_ETAG, b"").decode() if frame is not None else None
        if frame is None:
            summary.add(company, MISSING_FILE, {})
        elif not config.force_reload and loaded.get(company) == etag:
            summary.add(company, UNCHANGED, {})
        else:
            frames[company] = frame
            summary.add(company, LOADED if frame.num_rows else EMPTY, {"rows_loaded": frame.num_rows})
    context.log.info(f"Loading {len(frames)} stored frames of {len(companies)} companies")
    return frames


def _records_check(context: dg.AssetExecutionContext, result: dg.AssetCheckResult) -> bool:
    """Whether this run can record the check result: it is selected, and (Dagster requires it for checks of
    partitioned assets) the run has partitions. A hand-picked config run still enforces and logs the checks."""
    has_partitions = context.has_partition_key or context.has_partition_key_range
    return has_partitions and dg.AssetCheckKey(result.asset_key, result.check_name) in context.selected_asset_check_keys


def _companies_of_run(context: dg.AssetExecutionContext, config: BatchConfig, batch: Batch) -> list[str]:
    if config.companies:
        return sorted(set(config.companies))
    if context.has_partition_key_range or context.has_partition_key:
        return sorted(context.partition_keys)
    return list(batch.selection.companies)


def _fetch_and_parse(bucket: SourceBucket, todo: dict[str, S3Object], max_bytes: int) -> dict[str, ParsedFile]:
    def work(company: str) -> tuple[str, ParsedFile]:
        if todo[company].size > max_bytes:
            return company, too_large(company, todo[company].size, max_bytes)
        # The GET and the parse run in the same worker: pyarrow releases the GIL, so parsing one file
        # overlaps with downloading the next.
        return company, parse_stock_csv(bucket.get_bytes(todo[company].key), company)

    with ThreadPoolExecutor(bucket.max_concurrency) as pool:
        return dict(pool.map(work, todo))


def _write_rejects(bucket: SourceBucket, run_id: str, parsed: dict[str, ParsedFile]) -> dict[str, str]:
    def put(company: str) -> tuple[str, str]:
        key = bucket.rejected_key(run_id, company)
        bucket.put_bytes(key, rejects_to_csv(parsed[company].rejects), "text/csv")
        return company, bucket.uri(key)

    with ThreadPoolExecutor(bucket.max_concurrency) as pool:
        return dict(pool.map(put, [c for c, p in parsed.items() if p.rows_rejected]))


def _date_metadata(frame: pa.Table) -> dict[str, str]:
    dates = reporting.date_range(frame)
    return {"min_date": dates[0], "max_date": dates[1]} if dates else {}


def _frame_metadata(
    bucket: SourceBucket, source: S3Object, result: ParsedFile, rejects_uri: str | None
) -> dict[str, object]:
    metadata: dict[str, object] = {
        "status": result.status,
        **reporting.company_counts(result),
        "source": dg.MetadataValue.path(bucket.uri(source.key)),
        "source_etag": source.etag,
        **_date_metadata(result.prices),
    }
    if result.reason:
        metadata["reason"] = result.reason
    if rejects_uri:
        metadata["rejects"] = dg.MetadataValue.path(rejects_uri)
    if result.status != REJECTED:
        metadata["frame"] = dg.MetadataValue.path(bucket.uri(bucket.processed_key(result.company)))
    if result.rows_loaded:
        metadata["preview"] = dg.MetadataValue.md(reporting.preview_markdown(result.prices))
    return metadata


def _export_output_csv(
    config: BatchConfig, bucket: SourceBucket, postgres: PostgresResource, regenerate: bool
) -> dict[str, object]:
    """Rewrite the extract when the table changed (or it is missing); return the table's figures."""
    schema, table = postgres.target
    regenerate = regenerate or config.include_header or not bucket.exists(bucket.output_key)
    with postgres.connect() as conn:
        warehouse.ensure_table(conn, schema, table)
        conn.commit()
        stats: dict[str, object] = {**warehouse.table_summary(conn, schema, table), "regenerated": regenerate}
        if regenerate:
            # Spooled to a local file, never held in memory: the extract grows with the table.
            with tempfile.TemporaryFile() as spool:
                stats["rows"] = warehouse.export_csv(conn, schema, table, spool, header=config.include_header)
                stats["bytes"] = spool.tell()
                spool.seek(0)
                bucket.upload_fileobj(bucket.output_key, spool, "text/csv")
    return stats


def _output_materialization(
    context: dg.AssetExecutionContext,
    bucket: SourceBucket,
    postgres: PostgresResource,
    summary: BatchSummary,
    stats: dict[str, object],
) -> dg.AssetMaterialization:
    schema, table = postgres.target
    if not stats["regenerated"]:
        context.log.info("No company's rows changed: the Output CSV already matches the table and was not rewritten")
    metadata: dict[str, object] = {
        "path": dg.MetadataValue.path(bucket.uri(bucket.output_key)),
        "regenerated": stats["regenerated"],
        "table": f"{schema}.{table}",
        "database": postgres.safe_url(),
        "table_rows": stats["rows"],
        "table_companies": stats["companies"],
        "table_min_date": str(stats["min_date"]),
        "table_max_date": str(stats["max_date"]),
        **summary.as_metadata(),
        "summary": dg.MetadataValue.json(summary.details()),
    }
    if "bytes" in stats:
        metadata["bytes"] = stats["bytes"]
    if summary.rejects_uris:
        metadata["rejects"] = dg.MetadataValue.path(bucket.uri(bucket.rejects_prefix(context.run.run_id)))
    return dg.AssetMaterialization(asset_key=HISTORICAL_STOCK_DATA_CSV, metadata=metadata)
