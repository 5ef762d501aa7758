"""Company frames as Parquet in the source bucket, one object per company partition.

`s3://<source>/Processed/company=<c>/prices.parquet` is Hive-style, so Athena, DuckDB or any other machine can
read the frames without Dagster. pyarrow writes and reads them; data scientists get pandas:
`defs.load_asset_value("company_stock_prices", partition_key="aapl")` (and any downstream asset that takes
company_stock_prices as an input) receives a `pandas.DataFrame` through `ParquetFramesIOManager` (a dict of them,
by company, for several partitions).

The batch step writes frames with `write_frames` instead of returning them as an output, because it records
materializations only for the companies it processed (see assets.py).
"""

import io
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stock_platform.resources.s3 import SourceBucket


def frame_to_parquet(frame: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(frame, sink, compression="zstd")
    return sink.getvalue()


def parquet_to_frame(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def write_frames(bucket: SourceBucket, frames: Mapping[str, pa.Table]) -> None:
    """PUT each frame's Parquet object concurrently. A PUT is atomic: readers never see half a frame."""

    def put(company: str) -> None:
        bucket.put_bytes(bucket.processed_key(company), frame_to_parquet(frames[company]))

    with ThreadPoolExecutor(bucket.max_concurrency) as pool:
        list(pool.map(put, frames))


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
        """Nothing to store: load_stock_batch writes the frames itself (`write_frames`) and yields no output."""

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        companies = list(context.asset_partition_keys)
        frames: dict[str, pd.DataFrame] = {c: f.to_pandas() for c, f in read_frames(self.bucket, companies).items()}
        if len(companies) == 1:
            if companies[0] not in frames:
                raise FileNotFoundError(f"No stored frame for company {companies[0]!r}: it was never processed")
            return frames[companies[0]]
        return frames
