"""The run's frames on local disk, between the parse and the load.

The rejected-share gate needs every file parsed before any frame is written, so a run used to hold every frame in
memory until its load (~1 GB of Arrow for the full 7,192-file dataset). Each frame is instead written once, as the
Parquet object it will be stored as, to a temporary folder as soon as it is parsed, and the run keeps only its
accounting (`SpooledFile`); the frames' PUTs send those files and the load reads them back one at a time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stock_platform.batch.frames import FrameStats, frame_to_parquet
from stock_platform.batch.transforms import FileStatus, ParsedFile

PREVIEW_ROWS = 5


@dataclass(frozen=True)
class SpooledFile:
    """A parsed file's accounting, rejected rows and a preview; its frame (unless rejected whole) is spooled."""

    company: str
    status: FileStatus
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    duplicates: int
    reason: str | None
    rejects: pa.Table
    stats: FrameStats
    head: pa.Table  # the frame's first rows, copied: a slice would keep the whole frame alive

    @classmethod
    def of(cls, parsed: ParsedFile) -> SpooledFile:
        head = pa.Table.from_pylist(parsed.prices.slice(0, PREVIEW_ROWS).to_pylist(), schema=parsed.prices.schema)
        return cls(
            company=parsed.company,
            status=parsed.status,
            rows_read=parsed.rows_read,
            rows_loaded=parsed.rows_loaded,
            rows_rejected=parsed.rows_rejected,
            duplicates=parsed.duplicates,
            reason=parsed.reason,
            rejects=parsed.rejects,
            stats=FrameStats.of(parsed.prices),
            head=head,
        )


class FrameSpool(Mapping[str, pa.Table]):
    """company -> frame, read back from its spooled Parquet file on each access."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="stock_platform_frames_")
        self._companies: set[str] = set()

    def path(self, company: str) -> Path:
        return Path(self._folder.name) / f"{company}.parquet"

    def put(self, company: str, frame: pa.Table) -> None:
        self.path(company).write_bytes(frame_to_parquet(frame))
        self._companies.add(company)

    def parquet(self, company: str) -> bytes:
        return self.path(company).read_bytes()

    def __getitem__(self, company: str) -> pa.Table:
        if company not in self._companies:
            raise KeyError(company)
        # In this thread only: Arrow's own threads would each take a heap of its default allocator (see
        # transforms.MEMORY_POOL).
        with pq.ParquetFile(self.path(company)) as file:
            return file.read(use_threads=False)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._companies))

    def __len__(self) -> int:
        return len(self._companies)

    def close(self) -> None:
        self._folder.cleanup()
        self._companies = set()
