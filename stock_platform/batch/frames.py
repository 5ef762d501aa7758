"""Company frames as Parquet in the source bucket, one object per company partition.

`s3://<source>/Processed/company=<c>/prices.parquet` is Hive-style, so Athena, DuckDB or any other machine can
read the frames without Dagster. pyarrow writes and reads them; data scientists get pandas:
`defs.load_asset_value("company_stock_prices", partition_key="aapl")` (and any downstream asset that takes
company_stock_prices as an input) receives a `pandas.DataFrame` through `ParquetFramesIOManager` (a dict of them,
by company, for several partitions).

The batch step stores frames itself (`FramePuts`) instead of returning them as an output, because it records
materializations only for the companies it processed, as soon as their frames are stored (see assets.py).
"""

import datetime
import io
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stock_platform.batch.transforms import MEMORY_POOL
from stock_platform.resources.s3 import SourceBucket


@dataclass(frozen=True)
class FrameStats:
    """What the table's materialization of a company says about its frame, kept once the frame itself is freed."""

    rows: int
    min_date: datetime.date | None
    max_date: datetime.date | None

    @classmethod
    def of(cls, frame: pa.Table) -> "FrameStats":
        if not frame.num_rows:
            return cls(0, None, None)
        dates = frame.column("stock_date")  # sorted by date
        return cls(int(frame.num_rows), dates[0].as_py(), dates[-1].as_py())


def frame_to_parquet(frame: pa.Table) -> bytes:
    sink = io.BytesIO()
    # Dictionary encoding only for the company (one value per frame): on the prices and dates it found nothing to
    # share and took half the write time; without it the objects are also ~20% smaller.
    pq.write_table(frame, sink, compression="zstd", use_dictionary=["company_name"], memory_pool=MEMORY_POOL)
    return sink.getvalue()


def parquet_to_frame(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


class FramePuts:
    """The frames of `companies` PUT concurrently, already encoded (`parquet(company)` gives the object's bytes).

    `groups()` yields the companies as their frames are stored. `stored` is done once every PUT is, or holds the
    first failure, however far the caller has iterated: the load commits on it while the caller is still recording
    the frames (recording them is slower than storing them). Leaving the `with` block cancels the PUTs not yet
    started, and `stored` then fails if they were not all done.
    """

    def __init__(self, bucket: SourceBucket, companies: Sequence[str], parquet: Callable[[str], bytes]) -> None:
        self.stored: Future[None] = Future()
        self._left = len(companies)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(bucket.max_concurrency)

        def put(company: str) -> str:
            bucket.put_bytes(bucket.processed_key(company), parquet(company))
            return company

        self._futures = [self._pool.submit(put, c) for c in companies]
        self._done: queue.SimpleQueue[Future[str]] = queue.SimpleQueue()
        if not companies:
            self.stored.set_result(None)
        for future in self._futures:
            future.add_done_callback(self._settle)
            future.add_done_callback(self._done.put)

    def _settle(self, future: "Future[str]") -> None:
        with self._lock:
            if self.stored.done():
                return
            if future.cancelled():
                self.stored.set_exception(RuntimeError("the frames' PUTs were stopped before they were all done"))
            elif (error := future.exception()) is not None:
                self.stored.set_exception(error)
            else:
                self._left -= 1
                if not self._left:
                    self.stored.set_result(None)

    def groups(self) -> Iterator[list[str]]:
        """Every company once, in groups as their frames are stored: the next one waited for, with every other
        stored by then. A caller that records each group while the PUTs go on gets larger groups the longer it
        takes, so it records them in fewer, larger batches (assets.py). The first failed PUT raises."""
        left = len(self._futures)
        while left:
            group = [self._done.get()]
            while len(group) < left:
                try:
                    group.append(self._done.get_nowait())
                except queue.Empty:
                    break
            left -= len(group)
            yield [stored.result() for stored in group]

    def __enter__(self) -> "FramePuts":
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def read_frames(bucket: SourceBucket, companies: list[str]) -> dict[str, pa.Table]:
    """The stored frames of `companies`; a company that has none is absent from the result."""
    present = {o.key for o in bucket.list_objects(bucket.processed_prefix)}
    fetch = [c for c in companies if bucket.processed_key(c) in present]

    def get(company: str) -> tuple[str, pa.Table]:
        return company, parquet_to_frame(bucket.get_bytes(bucket.processed_key(company)))

    with ThreadPoolExecutor(bucket.max_concurrency) as pool:
        return dict(pool.map(get, fetch))


def delete_frames(bucket: SourceBucket, companies: Sequence[str]) -> None:
    for company in companies:
        bucket.delete_prefix(bucket.processed_key(company).rsplit("/", 1)[0] + "/")


class ParquetFramesIOManager(dg.ConfigurableIOManager):
    """Loads company_stock_prices partitions from their Parquet objects (one frame, or a dict for a range)."""

    bucket: dg.ResourceDependency[SourceBucket]

    def handle_output(self, context: dg.OutputContext, obj: None) -> None:
        """Nothing to store: load_stock_batch stores the frames itself (`FramePuts`) and yields no output."""

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        companies = list(context.asset_partition_keys)
        frames: dict[str, pd.DataFrame] = {c: f.to_pandas() for c, f in read_frames(self.bucket, companies).items()}
        if len(companies) == 1:
            if companies[0] not in frames:
                raise FileNotFoundError(f"No stored frame for company {companies[0]!r}: it was never processed")
            return frames[companies[0]]
        return frames
