"""The run's plan and the parse of its files, Dagster-free: which files to read, their download and row rules
(transforms.py) concurrently, their rejected rows, and the rejected-share gate's evidence."""

from __future__ import annotations

import itertools
import os
import queue
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa

from stock_platform.batch.quality import RejectedShare
from stock_platform.batch.sources import Batch
from stock_platform.batch.spool import SpooledFile
from stock_platform.batch.summary import CompanyResult, CompanyStatus, RowCounts
from stock_platform.batch.transforms import MEMORY_POOL, ParsedFile, parse_stock_csv, rejects_to_csv, too_large
from stock_platform.resources.s3 import S3Object, SourceBucket

WORST_CAP = 20
Kept = TypeVar("Kept")


@dataclass(frozen=True)
class Plan:
    """The run's companies and which of their files to read."""

    companies: tuple[str, ...]
    todo: dict[str, S3Object]  # company -> the file to read


@dataclass(frozen=True)
class Parsed:
    files: dict[str, SpooledFile]
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


def rejected_share(files: Mapping[str, SpooledFile], threshold: float) -> RejectedShare:
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


def company_result(parsed: SpooledFile) -> CompanyResult:
    status = {"loaded": CompanyStatus.LOADED, "empty": CompanyStatus.EMPTY, "rejected": CompanyStatus.REJECTED}
    rows = RowCounts(parsed.rows_read, parsed.rows_loaded, parsed.rows_rejected, parsed.duplicates)
    return CompanyResult(status[parsed.status], rows, parsed.reason)


def fetch_and_parse(
    bucket: SourceBucket,
    todo: dict[str, S3Object],
    max_bytes: int,
    log: Callable[[str], None],
    keep: Callable[[ParsedFile], Kept],
) -> dict[str, Kept]:
    """Download and parse every file of `todo` concurrently; `keep` (called in this thread, one file at a time, as
    each is parsed) decides what the run keeps of each. By company in name order."""

    # Results come back through a queue, not futures: a finished future keeps its result (the whole frame) for
    # as long as the pool's bookkeeping holds the future, and `keep` is there to let the frame go.
    parsed_files: queue.SimpleQueue[ParsedFile | BaseException] = queue.SimpleQueue()

    def parse(company: str, data: bytes) -> None:
        try:
            parsed_files.put(parse_stock_csv(data, company))
        except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
            parsed_files.put(error)

    def fetch(company: str, parsers: ThreadPoolExecutor) -> None:
        try:
            source = todo[company]
            if source.size > max_bytes:
                parsed_files.put(too_large(company, source.size, max_bytes))
            else:
                parsers.submit(parse, company, bucket.get_bytes(source.key))
        except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
            parsed_files.put(error)

    # The row rules' pyarrow calls take the default pool: make it the batch's (see transforms.MEMORY_POOL).
    pa.set_memory_pool(MEMORY_POOL)
    results: dict[str, Kept] = {}
    step = max(1, len(todo) // 10)
    rows = 0
    # GETs wait on the network and parses on the CPU: the GETs have the bucket's concurrency, the parses no more
    # threads than the cores can keep busy (each thread that allocates keeps an allocator arena of its own).
    parse_threads = min(bucket.max_concurrency, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(parse_threads) as parsers, ThreadPoolExecutor(bucket.max_concurrency) as pool:
        # A window of files in flight (downloaded, parsed, not yet kept) bounds the memory they take: without it
        # the parsed frames waiting for `keep` made the run's peak resident set ~75 MB larger at 1,000 files.
        waiting = iter(todo)
        for company in itertools.islice(waiting, 2 * bucket.max_concurrency):
            pool.submit(fetch, company, parsers)
        try:
            for done in range(1, len(todo) + 1):
                parsed = parsed_files.get()
                if (following := next(waiting, None)) is not None:
                    pool.submit(fetch, following, parsers)
                if isinstance(parsed, BaseException):
                    raise parsed
                results[parsed.company] = keep(parsed)
                rows += parsed.rows_read
                del parsed
                if done % step == 0 or done == len(todo):
                    log(f"Parsed {done} of {len(todo)} files ({rows} rows read)")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            parsers.shutdown(wait=True, cancel_futures=True)
    return dict(sorted(results.items()))


def write_rejects(bucket: SourceBucket, run_id: str, files: Mapping[str, SpooledFile]) -> dict[str, str]:
    """PUT each file's rejected rows (those that have any) under the run's prefix: company -> URI."""

    def put(company: str) -> tuple[str, str]:
        key = bucket.rejected_key(run_id, company)
        bucket.put_bytes(key, rejects_to_csv(files[company].rejects), "text/csv")
        return company, bucket.uri(key)

    with ThreadPoolExecutor(bucket.max_concurrency) as pool:
        return dict(pool.map(put, [c for c, p in files.items() if p.rows_rejected]))
