"""The quotes lake: Parquet under `Lake/quotes/date=<YYYY-MM-DD>/ticker=<T>/part-*.parquet` (Hive layout).

Each intake run writes one part per (exchange day, ticker) it touched, named after its batch, so a retried run
overwrites its own parts instead of adding copies. Delivery is at-least-once, so two parts may hold the same
quote until the daily compaction rewrites each day and ticker into one de-duplicated, time-ordered file
(`part-compacted.parquet`). `date` and `ticker` live only in the path (Athena's partition columns must not repeat
inside the files); readers get them back through Hive partitioning.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from stock_platform.quotes.model import Quote, trading_day
from stock_platform.resources.s3 import S3Bucket

LAKE_SCHEMA = pa.schema(
    [
        pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("volume", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
    ]
)
COMPACTED_NAME = "part-compacted.parquet"
_PART_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


@dataclass(frozen=True)
class Compacted:
    day: date
    tickers: int
    parts_read: int
    parts_deleted: int
    rows: int  # distinct quotes kept
    duplicates_dropped: int


def day_prefix(prefix: str, day: date) -> str:
    return f"{prefix}date={day.isoformat()}/"


def part_key(prefix: str, day: date, ticker: str, part_id: str) -> str:
    if not _PART_ID.match(part_id):
        raise ValueError(f"part id {part_id!r}: letters, digits, '_' and '-' only")
    return f"{day_prefix(prefix, day)}ticker={ticker}/part-{part_id}.parquet"


def quotes_table(quotes: Sequence[Quote]) -> pa.Table:
    return pa.table(
        {
            "event_time": [q.event_time for q in quotes],
            "price": [q.price for q in quotes],
            "volume": [q.volume for q in quotes],
            "source": [q.source for q in quotes],
        },
        schema=LAKE_SCHEMA,
    )


def to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def partition_quotes(quotes: Sequence[Quote], exchange_tz: str) -> dict[tuple[date, str], list[Quote]]:
    """Quotes by (exchange day, ticker), each group in time order. Pure."""
    groups: dict[tuple[date, str], list[Quote]] = {}
    for quote in sorted(quotes, key=lambda q: q.time_text):
        groups.setdefault((trading_day(quote.event_time, exchange_tz), quote.ticker), []).append(quote)
    return groups


def write_parts(bucket: S3Bucket, prefix: str, quotes: Sequence[Quote], exchange_tz: str, part_id: str) -> list[str]:
    """PUT one Parquet part per (day, ticker) of `quotes`; return the keys written."""
    groups = partition_quotes(quotes, exchange_tz)

    def put(item: tuple[tuple[date, str], list[Quote]]) -> str:
        (day, ticker), group = item
        key = part_key(prefix, day, ticker, part_id)
        bucket.put_bytes(key, to_parquet(quotes_table(group)))
        return key

    # One small PUT per (day, ticker): concurrent, like the batch's frames (a tick can touch hundreds of tickers).
    with ThreadPoolExecutor(bucket.max_concurrency) as pool:
        return list(pool.map(put, groups.items()))


def compact_table(tables: Sequence[pa.Table]) -> pa.Table:
    """One table per (event time): the first row of each instant kept, in time order. Pure."""
    combined = pa.concat_tables([t.select(LAKE_SCHEMA.names).cast(LAKE_SCHEMA) for t in tables])
    if combined.num_rows == 0:
        return combined
    indexed = combined.append_column("_row", pa.array(range(combined.num_rows), pa.int64()))
    first = indexed.group_by("event_time", use_threads=False).aggregate([("_row", "min")])
    kept = indexed.take(first.column("_row_min")).sort_by([("event_time", "ascending"), ("_row", "ascending")])
    return kept.drop_columns(["_row"])


def compact_day(bucket: S3Bucket, prefix: str, day: date) -> Compacted:
    """Rewrite each ticker of `day` into one de-duplicated file, then delete the parts it replaced.

    The compacted file is written before the parts go, so a reader never misses a quote (it may see one twice
    for a moment). Parts written while this runs are not in the listing, so they are kept for the next pass. A
    ticker already compacted is read for the counts and left as it is.
    """
    by_ticker: dict[str, list[str]] = {}
    for obj in bucket.list_objects(day_prefix(prefix, day)):
        folder, _, name = obj.key.rpartition("/")
        if name.endswith(".parquet") and "/ticker=" in f"/{folder}":
            by_ticker.setdefault(folder.rsplit("ticker=", 1)[1], []).append(obj.key)
    parts_read = parts_deleted = rows = dropped = 0
    for ticker, keys in sorted(by_ticker.items()):
        tables = [pq.read_table(io.BytesIO(bucket.get_bytes(k))) for k in keys]
        compacted = compact_table(tables)
        target = f"{day_prefix(prefix, day)}ticker={ticker}/{COMPACTED_NAME}"
        if keys != [target]:  # a ticker with only its compacted file is counted, not written again
            bucket.put_bytes(target, to_parquet(compacted))
        for key in keys:
            if key != target:
                bucket.get_client().delete_object(Bucket=bucket.bucket, Key=key)
                parts_deleted += 1
        parts_read += len(keys)
        rows += compacted.num_rows
        dropped += sum(t.num_rows for t in tables) - compacted.num_rows
    return Compacted(day, len(by_ticker), parts_read, parts_deleted, rows, dropped)
