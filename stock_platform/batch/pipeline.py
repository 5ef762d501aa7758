"""The batch load, Dagster-free: plan -> fetch and parse -> rejects -> frames -> load -> checks' evidence -> export.

`BatchRun` takes plain resources and arguments and keeps one typed `RunSummary` that says, at every moment, what
has and has not happened: a run that stops half-way reports exactly what it processed, what it committed (the
database's own counts) and the table as it stands. The asset in assets.py maps this onto Dagster events.

Follow one company's bytes: `plan` decides whether its file changed (ETag vs the load ledger), `parse` downloads
and parses it (parsing.py, transforms.py), spools its Parquet frame to local disk (spool.py) and writes its
rejected rows, `storing_frames` PUTs the frame, `load` replaces its rows in one transaction with every other company
of the run (warehouse.py), and `export` rewrites the Output CSV when the table's version moved past the one the
extract records.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pyarrow as pa

from stock_platform.batch import warehouse
from stock_platform.batch.frames import FramePuts, FrameStats, delete_frames, read_frames
from stock_platform.batch.parsing import (
    Parsed,
    Plan,
    company_result,
    fetch_and_parse,
    plan_companies,
    rejected_share,
    write_rejects,
)
from stock_platform.batch.quality import Finding, QualityPolicy
from stock_platform.batch.schema import prepare_tables
from stock_platform.batch.sources import Batch, read_batch
from stock_platform.batch.spool import FrameSpool, SpooledFile
from stock_platform.batch.summary import (
    CompanyResult,
    CompanyStatus,
    ExtractState,
    RowCounts,
    RunSummary,
    TableState,
)
from stock_platform.batch.transforms import ParsedFile
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import SourceBucket

__all__ = ["EXTRACT_VERSION", "BatchRun", "Parsed", "Plan", "RejectedShareExceeded"]

# User metadata on the Output CSV object: the table version (and header choice) it was exported at.
EXTRACT_VERSION = "table-version"
EXTRACT_TABLE = "table-oid"  # which table the version counts: a recreated table starts again at version 1
EXTRACT_ROWS = "rows"
EXTRACT_HEADER = "header"


class RejectedShareExceeded(RuntimeError):
    """More rows were rejected than the quality policy allows: nothing was written to the frames or the table."""


class BatchRun:
    """One run of the batch, phase by phase; `summary` is always true to what has happened so far."""

    def __init__(
        self,
        bucket: SourceBucket,
        postgres: PostgresResource,
        policy: QualityPolicy,
        run_id: str,
        *,
        force_reload: bool = False,
        include_header: bool = False,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.bucket = bucket
        self.postgres = postgres
        self.policy = policy
        self.run_id = run_id
        self.force_reload = force_reload
        self.include_header = include_header
        self.log = log
        self.target = warehouse.Target(postgres.schema_name, postgres.table)
        self.summary = RunSummary()
        self.frames: Mapping[str, pa.Table] = {}  # the frames to load, until the load has committed them
        self.spool = FrameSpool()
        self.frame_stats: dict[str, FrameStats] = {}  # what the table's materializations say of each frame
        self.findings: dict[str, Finding] | None = None
        self._phases: dict[str, float] = {}
        # Phases of one run overlap (the frames' PUTs with the load, the table's events with the extract): every
        # change to the summary goes through `_update`, so none is lost.
        self._lock = threading.Lock()
        self._listed: list[str] | None = None  # the batch's companies, once read
        # The table's state as last counted (by the checks or the extract): the extract and the summary take it
        # while the table is still at its version (warehouse.table_state).
        self._counted: TableState | None = None

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._record(name, time.perf_counter() - started)

    def _record(self, phase: str, seconds: float) -> None:
        with self._lock:
            self._phases[phase] = round(self._phases.get(phase, 0.0) + seconds, 3)
            self.summary = replace(self.summary, phases=dict(self._phases))

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self.summary = replace(self.summary, **changes)

    def prepare(self) -> None:
        """Create the tables if missing and verify the existing ones against the declaration: once per run, and
        before anything is written anywhere."""
        with self._phase("prepare"), self.postgres.unreachable_as_database_error():
            prepare_tables(self.postgres.engine(), self.target.schema, self.target.table)

    def read(self) -> Batch:
        """The list and the files, and the companies in the table that are no longer among them."""
        with self._phase("list"):
            batch = read_batch(self.bucket)
            self._listed = batch.selection.companies
            with self.postgres.connect() as conn:
                stale = warehouse.stale_companies(conn, self.target, self._listed)
        self.summary = replace(
            self.summary, missing=batch.selection.missing, ambiguous=dict(batch.selection.ambiguous), stale=stale
        )
        return batch

    def plan(self, batch: Batch, companies: Sequence[str]) -> Plan:
        with self.postgres.connect() as conn:
            loaded = warehouse.loaded_etags(conn, self.target)
        plan, settled = plan_companies(batch, companies, loaded, self.force_reload)
        self.summary = replace(self.summary, companies={**self.summary.companies, **settled})
        self.log(f"{len(plan.companies)} companies in the run: {len(plan.todo)} files to read, {len(settled)} not")
        return plan

    def parse(self, plan: Plan) -> Parsed:
        """Download and parse the files (concurrently), write their rejected rows, evaluate the rejected share."""
        with self._phase("download_parse"):
            files = fetch_and_parse(
                self.bucket, plan.todo, self.policy.max_file_bytes, self.log, lambda p: self._keep(plan, p)
            )
        with self._phase("rejects"):
            rejects = write_rejects(self.bucket, self.run_id, files)
        for company, parsed in files.items():
            self.summary = self.summary.with_company(company, company_result(parsed))
        if rejects:
            self.summary = replace(self.summary, rejects_uri=self.bucket.uri(self.bucket.rejects_prefix(self.run_id)))
        return Parsed(files, rejects, rejected_share(files, self.policy.max_rejected_share))

    def ensure_gate(self, parsed: Parsed) -> None:
        gate = parsed.gate
        if not gate.passed:
            raise RejectedShareExceeded(
                f"{gate.rows_rejected} of {gate.rows_read} rows rejected ({gate.share:.2%}), above the "
                f"{gate.threshold:.2%} threshold: the frames and the table were not touched. "
                f"Rejects: {self.summary.rejects_uri}"
            )

    def _keep(self, plan: Plan, parsed: ParsedFile) -> SpooledFile:
        """Spool the frame of a file not rejected whole (with where its rows came from), keep the accounting."""
        if parsed.status != "rejected":  # a file rejected whole keeps the company's previous rows and frame
            source = plan.todo[parsed.company]
            self.spool.put(parsed.company, warehouse.with_source(parsed.prices, source.key, source.etag))
        return SpooledFile.of(parsed)

    def stage_frames(self, parsed: Parsed) -> None:
        """The spooled frames become the frames the run stores (`storing_frames`) and loads."""
        self.frames = self.spool
        self.frame_stats = {company: parsed.files[company].stats for company in self.spool}

    @contextmanager
    def storing_frames(self) -> Iterator[FramePuts]:
        """PUT the spooled frames; the caller iterates over the companies as their frames are stored, to record
        them while the other PUTs go on. The phase ends when the last frame is stored.

        The load must commit only once every frame is stored (`puts.stored`): the ledger will say these files are
        loaded, so their frames must already exist.
        """
        started = time.perf_counter()
        with FramePuts(self.bucket, list(self.spool), self.spool.parquet) as puts:
            if self.spool:
                puts.stored.add_done_callback(lambda _: self._record("frames", time.perf_counter() - started))
            yield puts

    def use_stored_frames(self, plan: Plan, companies: Sequence[str]) -> dict[str, pa.Table]:
        """The table alone: load the companies' stored frames whose source is not what the table holds."""
        with self.postgres.connect() as conn:
            loaded = warehouse.loaded_etags(conn, self.target)
        stored = read_frames(self.bucket, list(companies))
        frames: dict[str, pa.Table] = {}
        self.frames = frames
        for company in companies:
            frame = stored.get(company)  # never `if frame`: the frame of an empty file has no rows, so it is falsy
            if frame is None:
                self.summary = self.summary.with_company(company, CompanyResult(CompanyStatus.MISSING_FILE))
            elif not self.force_reload and loaded.get(company) == warehouse.frame_source(frame)[1]:
                self.summary = self.summary.with_company(company, CompanyResult(CompanyStatus.UNCHANGED))
            else:
                frames[company] = frame
                self.frame_stats[company] = FrameStats.of(frame)
                status = CompanyStatus.LOADED if frame.num_rows else CompanyStatus.EMPTY
                counts = RowCounts(frame.num_rows, frame.num_rows, 0, 0)
                self.summary = self.summary.with_company(company, CompanyResult(status, counts))
        self.log(f"Loading {len(self.frames)} stored frames of {len(companies)} companies")
        return self.frames

    def load(self, before_commit: Callable[[], None] | None = None) -> None:
        """Replace the run's companies' rows in one transaction; the summary's commit comes from the database.

        `before_commit` runs inside the transaction, last: the load waits there for the frames to be stored.
        """
        ready = before_commit or (lambda: None)
        if not self.frames:
            ready()
            return
        waited = 0.0

        def wait() -> None:
            nonlocal waited
            started = time.perf_counter()
            ready()
            waited = time.perf_counter() - started

        started = time.perf_counter()
        try:
            with self.postgres.connect() as conn:
                commit = warehouse.replace_companies(conn, self.target, self.frames, self.run_id, before_commit=wait)
        finally:
            # The load's own time: the wait for the frames is the frames' phase.
            self._record("load", time.perf_counter() - started - waited)
        self._update(commit=commit)
        self.frames = {}  # committed: the run no longer needs the rows (frame_stats describes them)
        self.spool.close()
        self.log(
            f"Committed {len(commit.companies)} companies: {commit.rows_inserted} rows inserted, "
            f"{commit.rows_updated} updated, {commit.rows_deleted} deleted, {commit.rows_unchanged} unchanged "
            f"(table version {commit.version})"
        )

    def prune(self, companies: Sequence[str]) -> None:
        """Remove companies (all their rows, ledger entries and frames) in one transaction."""
        if not companies:
            return
        with self._phase("prune"), self.postgres.connect() as conn:
            pruned = warehouse.prune(conn, self.target, companies, self.run_id)
        commit = self.summary.commit
        merged = (
            pruned
            if commit is None
            else replace(
                commit,
                rows_deleted=commit.rows_deleted + pruned.rows_deleted,
                version=pruned.version,
                pruned=pruned.pruned,
            )
        )
        self._update(commit=merged)
        with self._phase("prune"):
            delete_frames(self.bucket, companies)
        self.log(f"Pruned {len(companies)} companies ({pruned.rows_deleted} rows): {', '.join(companies)}")

    def check(self) -> dict[str, Finding]:
        with self._phase("checks"), self.postgres.connect() as conn:
            inspection = warehouse.quality_findings(conn, self.target, today=datetime.date.today())
        self.findings, self._counted = inspection.findings, inspection.state
        return self.findings

    def export(self) -> ExtractState:
        """Rewrite the Output CSV unless it already records this table's current version (and header choice)."""
        uri = self.bucket.uri(self.bucket.output_key)
        with (
            self._phase("extract"),
            self.postgres.connect() as lock_conn,
            warehouse.extract_lock(lock_conn, self.target),
        ):
            with self.postgres.connect() as conn:
                version = warehouse.table_version(conn, self.target)
                identity = warehouse.table_identity(conn, self.target)
            meta = self.bucket.head_metadata(self.bucket.output_key) or {}
            header = "true" if self.include_header else "false"
            recorded = (meta.get(EXTRACT_TABLE), meta.get(EXTRACT_VERSION), meta.get(EXTRACT_HEADER))
            if recorded == (identity, str(version), header):
                extract = ExtractState(uri, version, int(meta.get(EXTRACT_ROWS, "0")), regenerated=False)
            else:
                # Streamed: the table's rows are uploaded as PostgreSQL sends them (a few parts in memory), never
                # held whole, and the COPY and the upload overlap. The upload records the snapshot's version.
                with (
                    self.postgres.connect() as conn,
                    warehouse.csv_export(conn, self.target, self.include_header, self._counted) as (state, chunks),
                ):
                    self._counted = state
                    self.bucket.upload_stream(
                        self.bucket.output_key,
                        chunks,
                        "text/csv",
                        {
                            EXTRACT_TABLE: identity,
                            EXTRACT_VERSION: str(state.version),
                            EXTRACT_ROWS: str(state.rows),
                            EXTRACT_HEADER: header,
                        },
                    )
                extract = ExtractState(uri, state.version, state.rows, regenerated=True)
        self._update(extract=extract)
        if not extract.regenerated:
            self.log("The Output CSV already records the table's current version: not rewritten")
        return extract

    def finish(self) -> RunSummary:
        """The summary with the table, and the companies it holds that are no longer listed, as they stand now."""
        with self.postgres.connect() as conn:
            self.summary = replace(self.summary, table=warehouse.table_state(conn, self.target, self._counted))
            if self._listed is not None:
                stale = warehouse.stale_companies(conn, self.target, self._listed)
                self.summary = replace(self.summary, stale=stale)
        return self.summary

    def close(self) -> None:
        """Remove the spooled frames (whatever happened)."""
        self.spool.close()

    def failed(self, error: BaseException) -> RunSummary:
        """The summary of a run that stopped on `error`: scrubbed of secrets, with the table as it stands (when
        the database can still be reached)."""
        summary = replace(self.summary, error=self.postgres.scrub(f"{type(error).__name__}: {error}"))
        try:
            with self.postgres.connect() as conn:
                summary = replace(summary, table=warehouse.table_state(conn, self.target))
        except Exception:  # noqa: BLE001 - the database may be what failed; the summary then says "unknown"
            summary = replace(summary, table=None)
        if summary.extract is None and summary.table is not None:
            summary = replace(summary, extract=self._extract_as_it_stands())
        self.summary = summary
        return summary

    def _extract_as_it_stands(self) -> ExtractState | None:
        """The Output CSV's recorded version, so a failed run says whether the extract is now older than the table."""
        try:
            meta = self.bucket.head_metadata(self.bucket.output_key)
        except Exception:  # noqa: BLE001 - S3 may be what failed; then the summary says nothing about the extract
            return None
        if meta is None:
            return None
        version = meta.get(EXTRACT_VERSION)
        rows = meta.get(EXTRACT_ROWS)
        return ExtractState(
            self.bucket.uri(self.bucket.output_key),
            int(version) if version and version.isdigit() else None,
            int(rows) if rows and rows.isdigit() else None,
            regenerated=False,
        )
