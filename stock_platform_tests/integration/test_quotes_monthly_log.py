"""The monthly log on moto: conditional writes under concurrency, and S3's 409 answered by a retry."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from stock_platform.quotes.model import Quote
from stock_platform.quotes.monthly_log import (
    MonthlyLogConflict,
    append_to_month,
    inspect_month,
    read_month,
    read_rows,
)
from stock_platform.resources.s3 import S3Bucket
from stock_platform_tests.faults import FlakyProxy

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 4, 14, 30, tzinfo=timezone.utc)
KEY = "Quotes/202403.csv"


def quotes(first: int, last: int, ticker: str = "AAPL") -> list[Quote]:
    return [Quote(ticker, T0 + timedelta(minutes=m), 100.0 + m, m, "test") for m in range(first, last)]


def test_eight_concurrent_writers_keep_every_distinct_quote_exactly_once(stack) -> None:
    # Writer i appends minutes [5i, 5i + 15) of two tickers: every quote is sent by up to three writers.
    batches = [quotes(5 * i, 5 * i + 15) + quotes(5 * i, 5 * i + 15, "MSFT") for i in range(8)]
    # Every writer's first read waits for all eight: they all write against the same (missing) month, so one write
    # wins and seven must be refused (412) and retried, however the machine schedules the threads.
    first_reads = threading.Barrier(8)
    seen = threading.local()

    class ReadsTogether:
        def __init__(self, client: object) -> None:
            self.client = client

        def get_object(self, **kwargs: object) -> object:
            try:
                return self.client.get_object(**kwargs)  # type: ignore[attr-defined]
            finally:  # after the read (also a NoSuchKey): no writer writes before every writer has read
                if not getattr(seen, "read", False):
                    seen.read = True
                    first_reads.wait()

        def __getattr__(self, name: str) -> object:
            return getattr(self.client, name)

    class RacingBucket(S3Bucket):
        def get_client(self) -> object:
            return ReadsTogether(super().get_client())

    def write(batch: list[Quote]) -> int:
        bucket = RacingBucket(bucket=stack.bucket)  # each writer its own client, as separate runs would have
        return append_to_month(bucket, KEY, batch, max_attempts=60).attempts

    with ThreadPoolExecutor(8) as pool:
        attempts = list(pool.map(write, batches))

    data, _ = read_month(S3Bucket(bucket=stack.bucket), KEY)
    rows = read_rows(data)
    distinct = {q.key for batch in batches for q in batch}
    assert len(rows) == len(distinct) == 2 * (5 * 7 + 15)
    assert {(r[0], r[1]) for r in rows} == distinct
    facts = inspect_month(data)
    assert facts.duplicate_keys == () and facts.out_of_order_rows == ()
    assert sorted(attempts)[1] > 1  # the writers did race: all but the first write were refused (412) and retried


def test_a_409_conflict_is_retried(stack) -> None:
    append_to_month(S3Bucket(bucket=stack.bucket), KEY, quotes(0, 2))

    refused: list[str] = []

    def fault(method: str, path: str, n: int) -> int | None:
        if method == "PUT" and not refused:  # the first conditional PUT meets S3's ConditionalRequestConflict
            refused.append(path)
            return 409
        return None

    with FlakyProxy(stack.endpoint, fault) as proxy:
        bucket = S3Bucket(bucket=stack.bucket, endpoint_url=proxy.url, max_attempts=1)
        appended = append_to_month(bucket, KEY, quotes(1, 4), sleep=lambda _: None)
        assert proxy.injected == 1
    assert appended.attempts == 2 and len(appended.added) == 2
    assert len(read_rows(read_month(S3Bucket(bucket=stack.bucket), KEY)[0])) == 4


def test_a_writer_that_always_loses_says_so(stack) -> None:
    append_to_month(S3Bucket(bucket=stack.bucket), KEY, quotes(0, 1))
    with FlakyProxy(stack.endpoint, lambda method, path, n: 412 if method == "PUT" else None) as proxy:
        bucket = S3Bucket(bucket=stack.bucket, endpoint_url=proxy.url, max_attempts=1)
        with pytest.raises(MonthlyLogConflict, match="3 attempts"):
            append_to_month(bucket, KEY, quotes(1, 2), max_attempts=3, sleep=lambda _: None)
    assert len(read_rows(read_month(S3Bucket(bucket=stack.bucket), KEY)[0])) == 1


def test_nothing_new_writes_nothing(stack) -> None:
    bucket = S3Bucket(bucket=stack.bucket)
    first = append_to_month(bucket, KEY, quotes(0, 3))
    again = append_to_month(bucket, KEY, quotes(0, 3))
    assert again.added == () and again.etag == first.etag
