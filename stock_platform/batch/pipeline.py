"""The batch load, Dagster-free: plan -> fetch and parse -> rejects -> frames -> load -> checks' evidence -> export.

`BatchRun` takes plain resources and arguments and keeps one typed `RunSummary` that says, at every moment, what
has and has not happened: a run that stops half-way reports exactly what it processed, what it committed (the
database's own counts) and the table as it stands. The asset in assets.py maps this onto Dagster events.

Follow one company's bytes: `plan` decides whether its file changed (ETag vs the load ledger), `parse` downloads
and parses it (transforms.py) and writes its rejected rows, `store_frames` writes its Parquet frame, `load`
replaces its rows in one transaction with every other company of the run (warehouse.py), and `export` rewrites
the Output CSV when the table's version moved past the one the extract records.
"""

from __future__ import annotations

import datetime
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pyarrow as pa

from stock_platform.batch import warehouse
from stock_platform.batch.frames import delete_frames, read_frames, write_frames
from stock_platform.batch.quality import Finding, QualityPolicy, RejectedShare
from stock_platform.batch.schema import prepare_tables
from stock_platform.batch.sources import Batch, read_batch
from stock_platform.batch.summary import (
    CompanyResult,
    CompanyStatus,
    ExtractState,
    RowCounts,
    RunSummary,
)
from stock_platform.batch.transforms import ParsedFile, parse_stock_csv, rejects_to_csv, too_large
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import S3Object, SourceBucket

# User metadata on the Output CSV object: the table version (and header choice) it was exported at.
EXTRACT_VERSION = "table-version"
EXTRACT_ROWS = "rows"
EXTRACT_HEADER = "header"
WORST_CAP = 20


class RejectedShareExceeded(RuntimeError):
    """More rows were rejected than the quality policy allows: nothing was written to the frames or the table."""


@dataclass(frozen=True)
class Plan:
    """The run's companies and which of their files to read."""

    companies: tuple[str, ...]
    todo: dict[str, S3Object]  # company -> the file to read


@dataclass(frozen=True)
class Parsed:
    files: dict[str, ParsedFile]
    rejects: dict[str, str]  # company -> URI of its rejected rows
    gate: RejectedShare


def plan_companies(
    batch: Batch, companies: Sequence[str], loaded: dict[str, str], force_reload: bool
) -> tuple[Plan, dict[str, CompanyResult]]:
    """Which files to read, and the outcome of every company that needs no reading. Pure."""
    todo: dict[str, S3Object] = {}
    settled: dict[str, CompanyResult] = {}
    for company in companies:
        source = batch.source_of(company)
        if company in batch.selection.ambiguous:
            files = ", ".join(batch.selection.ambiguous[company])
            settled[company] = CompanyResult(CompanyStatus.AMBIGUOUS, reason=f"several files: {files}")
        elif source is None:
            settled[company] = CompanyResult(CompanyStatus.MISSING_FILE)
        elif not force_reload and loaded.get(company) == source.etag:
            settled[company] = CompanyResult(CompanyStatus.UNCHANGED)
        else:
            todo[company] = source
    return Plan(tuple(companies), todo), settled


def rejected_share(files: dict[str, ParsedFile], threshold: float) -> RejectedShare:
    worst = sorted(
        ((c, p.rows_rejected / p.rows_read) for c, p in files.items() if p.rows_read and p.rows_rejected),
        key=lambda item: -item[1],
    )[:WORST_CAP]
    return RejectedShare(
        rows_read=sum(p.rows_read for p in files.values()),
        rows_rejected=sum(p.rows_rejected for p in files.values()),
        threshold=threshold,
        worst=dict(worst),
    )


def company_result(parsed: ParsedFile) -> CompanyResult:
    status = {"loaded": CompanyStatus.LOADED, "empty": CompanyStatus.EMPTY, "rejected": CompanyStatus.REJECTED}
    rows = RowCounts(parsed.rows_read, parsed.rows_loaded, parsed.rows_rejected, parsed.duplicates)
    return CompanyResult(status[parsed.status], rows, parsed.reason)


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
        self.frames: dict[str, pa.Table] = {}
        self.findings: dict[str, Finding] | None = None
        self._phases: dict[str, float] = {}
        self._listed: list[str] | None = None  # the batch's companies, once read

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._phases[name] = round(self._phases.get(name, 0.0) + time.perf_counter() - started, 3)
            self.summary = replace(self.summary, phases=dict(self._phases))

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
            files = self._fetch_and_parse(plan.todo)
        with self._phase("rejects"):
            rejects = self._write_rejects(files)
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

    def store_frames(self, plan: Plan, parsed: Parsed) -> dict[str, pa.Table]:
        """Write the frames of the files not rejected whole; they become the frames the run loads.

        Written before anything reaches the table: the ledger will say these files are loaded, so their frames
        must already exist.
        """
        self.frames = {
            company: result.prices.replace_schema_metadata(
                {
                    warehouse.SOURCE_KEY: plan.todo[company].key.encode(),
                    warehouse.SOURCE_ETAG: plan.todo[company].etag.encode(),
                }
            )
            for company, result in parsed.files.items()
            if result.status != "rejected"  # a file rejected whole keeps the company's previous rows and frame
        }
        with self._phase("frames"):
            write_frames(self.bucket, self.frames)
        return self.frames

    def use_stored_frames(self, plan: Plan, companies: Sequence[str]) -> dict[str, pa.Table]:
        """The table alone: load the companies' stored frames whose source is not what the table holds."""
        with self.postgres.connect() as conn:
            loaded = warehouse.loaded_etags(conn, self.target)
        stored = read_frames(self.bucket, list(companies))
        for company in companies:
            frame = stored.get(company)
            etag = (frame.schema.metadata or {}).get(warehouse.SOURCE_ETAG, b"").decode() if frame else None
            if frame is None:
                self.summary = self.summary.with_company(company, CompanyResult(CompanyStatus.MISSING_FILE))
            elif not self.force_reload and loaded.get(company) == etag:
                self.summary = self.summary.with_company(company, CompanyResult(CompanyStatus.UNCHANGED))
            else:
                self.frames[company] = frame
                status = CompanyStatus.LOADED if frame.num_rows else CompanyStatus.EMPTY
                counts = RowCounts(frame.num_rows, frame.num_rows, 0, 0)
                self.summary = self.summary.with_company(company, CompanyResult(status, counts))
        self.log(f"Loading {len(self.frames)} stored frames of {len(companies)} companies")
        return self.frames

    def load(self) -> None:
        """Replace the run's companies' rows in one transaction; the summary's commit comes from the database."""
        if not self.frames:
            return
        with self._phase("load"), self.postgres.connect() as conn:
            commit = warehouse.replace_companies(conn, self.target, self.frames, self.run_id)
        self.summary = replace(self.summary, commit=commit)
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
        self.summary = replace(self.summary, commit=merged)
        with self._phase("prune"):
            delete_frames(self.bucket, companies)
        self.log(f"Pruned {len(companies)} companies ({pruned.rows_deleted} rows): {', '.join(companies)}")

    def check(self) -> dict[str, Finding]:
        with self._phase("checks"), self.postgres.connect() as conn:
            self.findings = warehouse.quality_findings(conn, self.target, today=datetime.date.today())
        return self.findings

    def export(self) -> ExtractState:
        """Rewrite the Output CSV unless it already records the table's current version (and header choice)."""
        uri = self.bucket.uri(self.bucket.output_key)
        with (
            self._phase("extract"),
            self.postgres.connect() as lock_conn,
            warehouse.extract_lock(lock_conn, self.target),
        ):
            with self.postgres.connect() as conn:
                current = warehouse.table_state(conn, self.target)
            meta = self.bucket.head_metadata(self.bucket.output_key) or {}
            header = "true" if self.include_header else "false"
            if meta.get(EXTRACT_VERSION) == str(current.version) and meta.get(EXTRACT_HEADER) == header:
                extract = ExtractState(uri, current.version, int(meta.get(EXTRACT_ROWS, "0")), regenerated=False)
            else:
                # Spooled to a local file, never held in memory: the extract grows with the table.
                with tempfile.TemporaryFile() as spool:
                    with self.postgres.connect() as conn:
                        state = warehouse.export_csv(conn, self.target, spool, header=self.include_header)
                    spool.seek(0)
                    self.bucket.upload_fileobj(
                        self.bucket.output_key,
                        spool,
                        "text/csv",
                        {EXTRACT_VERSION: str(state.version), EXTRACT_ROWS: str(state.rows), EXTRACT_HEADER: header},
                    )
                extract = ExtractState(uri, state.version, state.rows, regenerated=True)
        self.summary = replace(self.summary, extract=extract)
        if not extract.regenerated:
            self.log("The Output CSV already records the table's current version: not rewritten")
        return extract

    def finish(self) -> RunSummary:
        """The summary with the table, and the companies it holds that are no longer listed, as they stand now."""
        with self.postgres.connect() as conn:
            self.summary = replace(self.summary, table=warehouse.table_state(conn, self.target))
            if self._listed is not None:
                stale = warehouse.stale_companies(conn, self.target, self._listed)
                self.summary = replace(self.summary, stale=stale)
        return self.summary

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

    def _fetch_and_parse(self, todo: dict[str, S3Object]) -> dict[str, ParsedFile]:
        max_bytes = self.policy.max_file_bytes

        def work(company: str) -> ParsedFile:
            source = todo[company]
            if source.size > max_bytes:
                return too_large(company, source.size, max_bytes)
            # The GET and the parse run in the same worker: pyarrow releases the GIL, so parsing one file
            # overlaps with downloading the next.
            return parse_stock_csv(self.bucket.get_bytes(source.key), company)

        results: dict[str, ParsedFile] = {}
        step = max(1, len(todo) // 10)
        rows = 0
        with ThreadPoolExecutor(self.bucket.max_concurrency) as pool:
            futures = {pool.submit(work, company): company for company in todo}
            for done, future in enumerate(as_completed(futures), start=1):
                parsed = future.result()
                results[futures[future]] = parsed
                rows += parsed.rows_read
                if done % step == 0 or done == len(todo):
                    self.log(f"Parsed {done} of {len(todo)} files ({rows} rows read)")
        return dict(sorted(results.items()))

    def _write_rejects(self, files: dict[str, ParsedFile]) -> dict[str, str]:
        def put(company: str) -> tuple[str, str]:
            key = self.bucket.rejected_key(self.run_id, company)
            self.bucket.put_bytes(key, rejects_to_csv(files[company].rejects), "text/csv")
            return company, self.bucket.uri(key)

        with ThreadPoolExecutor(self.bucket.max_concurrency) as pool:
            return dict(pool.map(put, [c for c, p in files.items() if p.rows_rejected]))
