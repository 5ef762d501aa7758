"""The lake's example queries, run through pyarrow datasets: the same results as the Athena SQL in
deploy/athena/queries.sql, locally (against moto's S3 in the tests) or against S3 itself.

Both tables are Hive-partitioned folders: quotes by `date=`/`ticker=` (lake.py), daily prices by `company=`
(batch/frames.py), so one partitioning rule reads each, and a quote's ticker meets a price's company through
`company_of_ticker` (lower case), as in the SQL's `lower(q.ticker) = p.company`.
"""

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

QUOTE_PARTITIONS = pa.schema([pa.field("date", pa.date32()), pa.field("ticker", pa.string())])
PRICE_PARTITIONS = pa.schema([pa.field("company", pa.string())])


def quotes_dataset(filesystem: pafs.FileSystem, root: str) -> ds.Dataset:
    """The quotes lake under `root` (`<bucket>/Lake/quotes`), partition columns `date` and `ticker` included."""
    return ds.dataset(
        root, filesystem=filesystem, format="parquet", partitioning=ds.partitioning(QUOTE_PARTITIONS, flavor="hive")
    )


def prices_dataset(filesystem: pafs.FileSystem, root: str) -> ds.Dataset:
    """The daily prices under `root` (`<bucket>/Processed`), partition column `company` included."""
    return ds.dataset(
        root, filesystem=filesystem, format="parquet", partitioning=ds.partitioning(PRICE_PARTITIONS, flavor="hive")
    )


def day_summary(quotes: ds.Dataset, day: date) -> pa.Table:
    """Per ticker on `day`: distinct quotes, lowest and highest price (queries.sql: day_summary)."""
    table = quotes.to_table(filter=pc.field("date") == pa.scalar(day, pa.date32()))
    distinct = table.group_by(["ticker", "event_time"], use_threads=False).aggregate([("price", "min")])
    summary = distinct.group_by("ticker", use_threads=False).aggregate(
        [("event_time", "count"), ("price_min", "min"), ("price_min", "max")]
    )
    return summary.rename_columns(["ticker", "quotes", "low", "high"]).sort_by("ticker")


def moves_against_previous_close(quotes: ds.Dataset, prices: ds.Dataset, day: date) -> pa.Table:
    """Each ticker's last quote on `day` against its company's last close before `day` (queries.sql: moves)."""
    table = quotes.to_table(
        columns=["ticker", "event_time", "price"], filter=pc.field("date") == pa.scalar(day, pa.date32())
    )
    # One row per (ticker, event time) first: before compaction a quote can sit in two parts.
    distinct = table.group_by(["ticker", "event_time"], use_threads=False).aggregate([("price", "min")])
    latest = distinct.group_by("ticker", use_threads=False).aggregate([("event_time", "max")])
    last = distinct.join(latest, ["ticker", "event_time"], ["ticker", "event_time_max"], join_type="inner")
    last = last.select(["ticker", "price_min"]).rename_columns(["ticker", "last_price"])
    last = last.append_column("company", pc.utf8_lower(last.column("ticker")))
    before = prices.to_table(
        columns=["company", "stock_date", "close_value"], filter=pc.field("stock_date") < pa.scalar(day, pa.date32())
    )
    newest = before.group_by("company", use_threads=False).aggregate([("stock_date", "max")])
    close = before.join(newest, ["company", "stock_date"], ["company", "stock_date_max"], join_type="inner")
    joined = last.join(close.select(["company", "close_value"]), "company", join_type="inner")
    move = pc.multiply(pc.divide(pc.subtract(joined["last_price"], joined["close_value"]), joined["close_value"]), 100)
    return (
        joined.append_column("move_percent", move)
        .select(["ticker", "last_price", "close_value", "move_percent"])
        .sort_by("ticker")
    )
