"""The quote stream end to end on moto's Kinesis: sensor ticks with cursors, then the ingest runs they request.

Duplicates, out-of-order records, a month boundary, a resharded stream, a tick cap and a restart from an old
cursor all end with the monthly logs holding every distinct quote exactly once, in time order.
"""

import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import dagster as dg
import pytest

from stock_platform.quotes.definitions import build_quote_defs
from stock_platform.quotes.model import Quote, format_time
from stock_platform.quotes.monthly_log import HEADER
from stock_platform.quotes.producer import main
from stock_platform.quotes.stream import read_tick
from stock_platform.resources.kinesis import KinesisStream
from stock_platform.settings import Settings
from stock_platform.tags import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from stock_platform_tests.faults import FlakyProxy
from stock_platform_tests.waiting import wait_until

pytestmark = pytest.mark.integration

UTC = timezone.utc
# 2024-01-31 20:30 in New York is already February 1st in UTC: the quote belongs to January (exchange calendar).
LATE_JANUARY = datetime(2024, 2, 1, 1, 30, tzinfo=UTC)


class NoPriceSource(dg.ConfigurableResource):
    def fetch_latest(self, ticker: str) -> object:
        raise AssertionError("the stream path never polls")


def record(ticker: str, moment: datetime, price: float, volume: int | None = 100) -> tuple[bytes, str]:
    body = {"ticker": ticker, "event_time": moment.isoformat(), "price": price, "volume": volume, "source": "test"}
    return json.dumps(body).encode(), ticker


@pytest.fixture
def stream(stack, monkeypatch: pytest.MonkeyPatch) -> KinesisStream:
    name = f"quotes-{uuid.uuid4().hex[:8]}"
    client = boto3.client("kinesis", endpoint_url=stack.endpoint)
    client.create_stream(StreamName=name, ShardCount=2)
    wait_until(
        lambda: client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE",
        timeout=30,
        what="the stream to be active",
    )
    monkeypatch.setenv("STOCK_PLATFORM_QUOTES_STREAM", name)
    return KinesisStream(stream_name=name)


class Platform:
    """The quotes domain with the shared resources, as definitions.py builds it."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        settings = Settings.from_environment()
        self.defs = dg.Definitions.merge(
            build_quote_defs(settings),
            dg.Definitions(resources={**settings.resources(), "price_source": NoPriceSource()}),
        )
        self.instance = instance
        self.sensor = self.defs.resolve_sensor_def("quote_stream_sensor")
        self.resources = {k: v for k, v in self.defs.resources.items() if k in ("quote_stream", "bucket", "intraday")}

    def tick(self, cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(cursor=cursor, resources=self.resources, instance=self.instance)
        result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        return result

    def run(self, request: dg.RunRequest) -> None:
        job = self.defs.resolve_job_def("quote_ingest_job")
        outcome = job.execute_in_process(run_config=request.run_config, tags=request.tags, instance=self.instance)
        assert outcome.success

    def drain(self, cursor: str | None, ticks: int = 20) -> tuple[str | None, int]:
        """Tick and run until a tick finds nothing; return the cursor and the number of runs."""
        for runs in range(ticks):
            result = self.tick(cursor)
            cursor = result.cursor
            if not result.run_requests:
                return cursor, runs
            (request,) = result.run_requests
            self.run(request)
        raise AssertionError(f"still reading after {ticks} ticks")


def month_rows(stack, month: str) -> list[dict[str, str]]:
    text = stack.get(f"Quotes/{month}.csv").decode()
    assert text.splitlines()[0] == ",".join(HEADER)
    return list(csv.DictReader(io.StringIO(text)))


def expected(quotes: list[tuple[str, datetime, float]]) -> list[tuple[str, str, str]]:
    distinct = {(t, format_time(m)): p for t, m, p in reversed(quotes)}  # the first delivery of a key wins
    return sorted(((t, s, repr(p)) for (t, s), p in distinct.items()), key=lambda r: (r[1], r[0]))


def logged(stack, month: str) -> list[tuple[str, str, str]]:
    return [(r["ticker"], r["event_time"], r["price"]) for r in month_rows(stack, month)]


def test_duplicates_out_of_order_and_a_month_boundary(stack, stream, instance) -> None:
    sent = [
        ("AAPL", LATE_JANUARY + timedelta(minutes=40), 101.0),  # February 1st, 02:10 UTC, still January 31st in NY
        ("AAPL", LATE_JANUARY, 100.0),  # earlier, but arrives later
        ("MSFT", datetime(2024, 2, 1, 15, 0, tzinfo=UTC), 400.0),  # February
        ("AAPL", LATE_JANUARY, 100.0),  # a duplicate
        ("MSFT", datetime(2024, 2, 1, 14, 0, tzinfo=UTC), 399.0),  # out of order within February
        ("MSFT", datetime(2024, 2, 1, 15, 0, tzinfo=UTC), 400.0),  # a duplicate
    ]
    stream.put_records([record(*q) for q in sent])
    platform = Platform(instance)
    first = platform.tick(None)
    (request,) = first.run_requests
    # One run over both months, carrying a staged key rather than the quotes themselves.
    assert (request.tags[PARTITION_RANGE_START_TAG], request.tags[PARTITION_RANGE_END_TAG]) == ("202401", "202402")
    staged = request.run_config["ops"]["ingest_quotes"]["config"]["staged_key"]
    assert staged.startswith("Staging/quotes/") and staged in stack.keys("Staging/")
    positions = json.loads(first.cursor)["positions"]
    assert sum(int(p) > 0 for p in positions.values()) >= 1
    platform.run(request)

    assert logged(stack, "202401") == expected([q for q in sent if q[1] < datetime(2024, 2, 1, 5, tzinfo=UTC)])
    assert logged(stack, "202402") == expected([q for q in sent if q[1] >= datetime(2024, 2, 1, 5, tzinfo=UTC)])

    # Nothing new: the next tick skips and keeps the cursor.
    again = platform.tick(first.cursor)
    assert not again.run_requests and json.loads(again.cursor)["positions"] == positions
    # A restart from an old cursor re-delivers the same records: same run key, and the logs do not change.
    replay = platform.tick(None)
    assert [r.run_key for r in replay.run_requests] == [request.run_key]
    platform.run(replay.run_requests[0])
    assert logged(stack, "202401") == expected([q for q in sent if q[1] < datetime(2024, 2, 1, 5, tzinfo=UTC)])
    assert len(month_rows(stack, "202402")) == 2


def test_capped_ticks_and_a_restart_in_the_middle(stack, stream, instance, monkeypatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_QUOTES_MAX_PER_TICK", "7")
    start = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)
    sent = [(t, start + timedelta(minutes=i), 50.0 + i) for i in range(12) for t in ("AAPL", "GE")]
    stream.put_records([record(*q) for q in sent])
    platform = Platform(instance)
    first = platform.tick(None)
    assert len(first.run_requests) == 1
    platform.run(first.run_requests[0])
    assert len(month_rows(stack, "202403")) == 7  # the cap bounds a tick
    # The daemon "restarts": a new platform object resumes from the stored cursor.
    _, runs = Platform(instance).drain(first.cursor)
    assert runs >= 3
    assert logged(stack, "202403") == expected(sent)


def test_a_resharded_stream_is_read_parent_first_and_completely(stack, stream, instance) -> None:
    client = stream.get_client()
    start = datetime(2024, 5, 6, 14, 0, tzinfo=UTC)
    before = [(t, start + timedelta(minutes=i), 10.0 + i) for i in range(5) for t in ("AAPL", "IBM", "GE")]
    stream.put_records([record(*q) for q in before])
    platform = Platform(instance)
    cursor, _ = platform.drain(None)
    parent = client.list_shards(StreamName=stream.stream_name)["Shards"][0]
    low, high = (int(parent["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    client.split_shard(
        StreamName=stream.stream_name, ShardToSplit=parent["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    wait_until(
        lambda: (
            client.describe_stream_summary(StreamName=stream.stream_name)["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE"
        ),
        timeout=30,
        what="the split to finish",
    )
    after = [(t, start + timedelta(hours=1, minutes=i), 20.0 + i) for i in range(5) for t in ("AAPL", "IBM", "GE")]
    stream.put_records([record(*q) for q in after + before[:3]])  # with three re-deliveries
    cursor, runs = platform.drain(cursor)
    assert runs >= 1
    assert logged(stack, "202405") == expected(before + after)
    listed = {s.shard_id for s in stream.list_shards()}
    assert len(listed) == 4
    assert set(json.loads(cursor)["positions"]) <= listed


def test_unparseable_records_are_kept_not_dropped(stack, stream, instance) -> None:
    good = ("AAPL", datetime(2024, 6, 3, 14, 0, tzinfo=UTC), 190.0)
    stream.put_records([record(*good), (b"not json", "x"), (json.dumps({"ticker": "AAPL"}).encode(), "y")])
    platform = Platform(instance)
    result = platform.tick(None)
    (request,) = result.run_requests
    staged = request.run_config["ops"]["ingest_quotes"]["config"]["staged_key"]
    rejected = json.loads(stack.get(staged))["rejected"]
    assert sorted(r["data"] for r in rejected) == sorted(['{"ticker": "AAPL"}', "not json"])
    assert all(r["reason"] for r in rejected)
    platform.run(request)
    assert logged(stack, "202406") == expected([good])


def test_quote_type_round_trip() -> None:
    quote = Quote("AAPL", LATE_JANUARY, 1.5, None, "x")
    assert quote.to_json()["event_time"] == "2024-02-01T01:30:00.000000Z"


def test_the_producer_replays_and_generates_at_a_rate(stack, stream, tmp_path) -> None:
    sample = tmp_path / "quotes.jsonl"
    sample.write_bytes(b"\n".join(record("AAPL", LATE_JANUARY + timedelta(seconds=s), 100.0)[0] for s in range(5)))
    assert main(["--rate", "1000", "--count", "5", "--replay", str(sample), "--stream", stream.stream_name]) == 0
    assert main(["--rate", "1000", "--count", "40", "--tickers", "AAPL,GE", "--duplicates", "0.5"]) == 0
    tick = read_tick(stream, None, max_quotes=1000)
    assert tick.rejected == []
    replayed = [q for q in tick.quotes if q.source == "test"]
    generated = [q for q in tick.quotes if q.source == "producer"]
    assert len(replayed) == 5 and len({q.key for q in replayed}) == 5
    assert len(generated) > 40 and {q.ticker for q in generated} == {"AAPL", "GE"}  # 40 plus the re-sent ones


def test_the_producer_creates_its_stream(stack, monkeypatch) -> None:
    name = f"created-{uuid.uuid4().hex[:8]}"
    assert main(["--rate", "100", "--count", "3", "--create", "--shards", "1", "--stream", name]) == 0
    assert len(KinesisStream(stream_name=name).list_shards()) == 1


def test_a_run_that_fails_midway_records_what_it_committed(stack, stream, instance, monkeypatch) -> None:
    stream.put_records([record("AAPL", datetime(2024, 7, 1, 14, 0, tzinfo=UTC), 100.0)])
    platform = Platform(instance)
    (request,) = platform.tick(None).run_requests
    monkeypatch.setenv("STOCK_PLATFORM_S3_MAX_ATTEMPTS", "1")
    lake_down = FlakyProxy(
        stack.endpoint, lambda method, path, n: 500 if method == "PUT" and "/Lake/" in path else None
    )
    with lake_down:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", lake_down.url)
        job = Platform(instance).defs.resolve_job_def("quote_ingest_job")
        failed = job.execute_in_process(
            run_config=request.run_config, tags=request.tags, instance=instance, raise_on_error=False
        )
    assert not failed.success
    (failure,) = failed.get_step_failure_events()
    text = failure.event_specific_data.error.message
    assert "Ingest stopped" in text and "1 new in the monthly logs (202407: +1)" in text
    events = instance.fetch_materializations(dg.AssetKey("quote_month_log"), limit=5).records
    assert [e.partition_key for e in events] == ["202407"]  # the log was committed, and the run says so
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    Platform(instance).run(request)  # the retry completes the lake; the log does not change
    assert logged(stack, "202407") == expected([("AAPL", datetime(2024, 7, 1, 14, 0, tzinfo=UTC), 100.0)])
    assert len(stack.keys("Lake/quotes/date=2024-07-01/")) == 1
