"""The lake on moto: parts from several runs (with re-deliveries), the daily compaction, and the example queries
through pyarrow datasets over both the quotes lake and the batch's Processed/company=<c>/ daily prices."""

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from stock_platform.batch.frames import FramePuts, frame_to_parquet
from stock_platform.batch.schema import ARROW_SCHEMA
from stock_platform.quotes.lake import COMPACTED_NAME, compact_day, write_parts
from stock_platform.quotes.model import Quote
from stock_platform.quotes.queries import (
    day_summary,
    moves_against_previous_close,
    prices_dataset,
    quotes_dataset,
)
from stock_platform.resources.s3 import SourceBucket

pytestmark = pytest.mark.integration

NY = "America/New_York"
PREFIX = "Lake/quotes/"
DAY = date(2024, 3, 5)
OPEN = datetime(2024, 3, 5, 14, 30, tzinfo=timezone.utc)


def q(ticker: str, minutes: int, price: float) -> Quote:
    return Quote(ticker, OPEN + timedelta(minutes=minutes), price, 10, "test")


def prices(company: str, closes: dict[str, float]) -> pa.Table:
    rows = [
        dict.fromkeys(ARROW_SCHEMA.names)
        | {"stock_date": date.fromisoformat(d), "close_value": v, "open_value": v, "company_name": company}
        for d, v in closes.items()
    ]
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)


def moves(quotes, daily) -> list[tuple]:
    rows = moves_against_previous_close(quotes, daily, DAY).to_pylist()
    return [(r["ticker"], r["last_price"], r["close_value"], round(r["move_percent"], 6)) for r in rows]


@pytest.fixture
def filesystem(stack) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(
        endpoint_override=stack.endpoint, scheme="http", access_key="testing", secret_key="testing", region="us-east-1"
    )


def test_compaction_and_the_same_queries_as_athena(stack, filesystem) -> None:
    bucket = SourceBucket(bucket=stack.bucket)
    first = [q("AAPL", 0, 170.0), q("AAPL", 5, 171.0), q("MSFT", 0, 400.0)]
    second = [q("AAPL", 5, 171.0), q("AAPL", 10, 173.4), q("MSFT", 3, 404.0), q("MSFT", 0, 400.0)]  # 2 re-sent
    write_parts(bucket, PREFIX, first, NY, "batch-1")
    write_parts(bucket, PREFIX, second, NY, "batch-2")
    write_parts(bucket, PREFIX, second, NY, "batch-2")  # a retried run rewrites its own parts
    assert len(stack.keys(f"{PREFIX}date=2024-03-05/")) == 4
    frames = {
        "aapl": prices("aapl", {"2024-03-01": 168.0, "2024-03-04": 170.0, "2024-03-05": 999.0}),
        "msft": prices("msft", {"2024-03-04": 400.0}),
    }
    with FramePuts(bucket, list(frames), lambda c: frame_to_parquet(frames[c])) as puts:
        assert sorted(c for group in puts.groups() for c in group) == ["aapl", "msft"]
    quotes = quotes_dataset(filesystem, f"{stack.bucket}/Lake/quotes")
    daily = prices_dataset(filesystem, f"{stack.bucket}/Processed")
    expected_summary = [
        {"ticker": "AAPL", "quotes": 3, "low": 170.0, "high": 173.4},
        {"ticker": "MSFT", "quotes": 2, "low": 400.0, "high": 404.0},
    ]
    # Both queries de-duplicate, so they answer the same before and after compaction.
    assert day_summary(quotes, DAY).to_pylist() == expected_summary
    expected_moves = [("AAPL", 173.4, 170.0, 2.0), ("MSFT", 404.0, 400.0, 1.0)]  # the close before the day
    assert moves(quotes, daily) == expected_moves

    done = compact_day(bucket, PREFIX, DAY)
    assert (done.tickers, done.parts_read, done.parts_deleted, done.rows, done.duplicates_dropped) == (2, 4, 4, 5, 2)
    assert sorted(stack.keys(f"{PREFIX}date=2024-03-05/")) == [
        f"{PREFIX}date=2024-03-05/ticker=AAPL/{COMPACTED_NAME}",
        f"{PREFIX}date=2024-03-05/ticker=MSFT/{COMPACTED_NAME}",
    ]
    quotes = quotes_dataset(filesystem, f"{stack.bucket}/Lake/quotes")
    assert quotes.to_table().num_rows == 5  # one file per day and ticker, every distinct quote once
    assert day_summary(quotes, DAY).to_pylist() == expected_summary

    assert moves(quotes, daily) == expected_moves

    # Compaction is idempotent, and a day already compacted is read, not written again: with the bucket's
    # versioning on, a rewrite would add a version of each file.
    stack.s3.put_bucket_versioning(Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"})
    again = compact_day(bucket, PREFIX, DAY)
    assert (again.parts_read, again.parts_deleted, again.rows, again.duplicates_dropped) == (2, 0, 5, 0)
    versions = stack.s3.list_object_versions(Bucket=stack.bucket, Prefix=f"{PREFIX}date=2024-03-05/")
    assert len(versions["Versions"]) == 2
