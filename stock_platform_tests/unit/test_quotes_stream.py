"""Reading the stream for one tick, against a fake Kinesis that behaves like AWS (not moto): 56-digit sequence
numbers, iterators that expire, closed shards that end with a null NextShardIterator, and resharding."""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from stock_platform.quotes.stream import StreamCursor, read_tick, reading_order
from stock_platform.resources.kinesis import Records, Shard

BASE = 49590338271490256608559692538361571095921575989136588898  # an AWS-sized sequence number
T0 = datetime(2024, 3, 4, 15, 0, tzinfo=timezone.utc)


def data(ticker: str, minute: int, price: float = 10.0) -> bytes:
    moment = (T0 + timedelta(minutes=minute)).isoformat()
    return json.dumps({"ticker": ticker, "event_time": moment, "price": price}).encode()


@dataclass
class FakeShard:
    shard_id: str
    parents: tuple[str, ...] = ()
    closed: bool = False
    records: list[tuple[str, bytes]] = field(default_factory=list)


class FakeKinesis:
    """AWS's semantics: sequence numbers grow across shards; a closed shard's last page has no next iterator."""

    def __init__(self, page: int = 2) -> None:
        self.shards: dict[str, FakeShard] = {}
        self.sequence = BASE
        self.page = page
        self.expire_next = 0  # how many of the next get_records calls answer ExpiredIteratorException
        self.iterator_requests: list[tuple[str, str | None]] = []
        self.reads: list[str] = []

    def add(self, shard_id: str, parents: tuple[str, ...] = ()) -> None:
        self.shards[shard_id] = FakeShard(shard_id, parents)

    def put(self, shard_id: str, payload: bytes) -> str:
        self.sequence += 10**20  # far past what a float or a 64-bit integer holds exactly
        self.shards[shard_id].records.append((str(self.sequence), payload))
        return str(self.sequence)

    def list_shards(self) -> list[Shard]:
        return [
            Shard(s.shard_id, s.parents, s.records[-1][0] if s.closed and s.records else ("0" if s.closed else None))
            for s in self.shards.values()
        ]

    def shard_iterator(self, shard_id: str, after_sequence: str | None) -> str:
        self.iterator_requests.append((shard_id, after_sequence))
        return json.dumps([shard_id, after_sequence])

    def get_records(self, iterator: str, limit: int) -> Records:
        if self.expire_next:
            self.expire_next -= 1
            raise ClientError({"Error": {"Code": "ExpiredIteratorException", "Message": "expired"}}, "GetRecords")
        shard_id, after = json.loads(iterator)
        self.reads.append(shard_id)
        shard = self.shards[shard_id]
        pending = [r for r in shard.records if after is None or int(r[0]) > int(after)]
        page = pending[: min(limit, self.page)]
        last = page[-1][0] if page else after
        at_end = len(page) == len(pending)
        next_iterator = None if shard.closed and at_end else json.dumps([shard_id, last])
        records = [{"SequenceNumber": s, "Data": d, "PartitionKey": "k"} for s, d in page]
        return Records(records, next_iterator, 0 if at_end else 1000)


def test_sequence_numbers_are_compared_as_integers() -> None:
    cursor = StreamCursor()
    cursor.advance("s", "99")
    cursor.advance("s", "100")  # as text, "100" < "99"
    cursor.advance("s", "98")
    assert cursor.positions["s"] == "100"
    assert cursor.is_new("s", "101") and not cursor.is_new("s", "100")


def test_a_tick_reads_every_shard_and_the_next_tick_nothing_twice() -> None:
    kinesis = FakeKinesis()
    kinesis.add("shard-0")
    kinesis.add("shard-1")
    for minute in range(5):
        kinesis.put("shard-0", data("AAPL", minute))
        kinesis.put("shard-1", data("MSFT", minute))
    first = read_tick(kinesis, None, max_quotes=100)
    assert len(first.quotes) == 10 and not first.capped
    assert kinesis.iterator_requests == [("shard-0", None), ("shard-1", None)]  # TRIM_HORIZON for new shards
    last = kinesis.put("shard-0", data("AAPL", 9))
    second = read_tick(kinesis, first.cursor.encode(), max_quotes=100)
    assert [q.ticker for q in second.quotes] == ["AAPL"]
    assert json.loads(second.cursor.encode())["positions"]["shard-0"] == last


def test_the_cap_bounds_a_tick_and_the_cursor_resumes_exactly() -> None:
    kinesis = FakeKinesis(page=3)
    kinesis.add("shard-0")
    for minute in range(10):
        kinesis.put("shard-0", data("AAPL", minute))
    seen: list[int] = []
    cursor = None
    for _ in range(4):
        tick = read_tick(kinesis, cursor, max_quotes=4)
        seen += [int((q.event_time - T0).total_seconds() // 60) for q in tick.quotes]
        cursor = tick.cursor.encode()
    assert seen == list(range(10))


def test_an_expired_iterator_is_replaced_after_the_last_sequence_read() -> None:
    kinesis = FakeKinesis(page=2)
    kinesis.add("shard-0")
    sequences = [kinesis.put("shard-0", data("AAPL", m)) for m in range(6)]
    first = read_tick(kinesis, None, max_quotes=2)
    kinesis.expire_next = 1
    kinesis.iterator_requests.clear()
    tick = read_tick(kinesis, first.cursor.encode(), max_quotes=100)
    assert kinesis.iterator_requests == [("shard-0", sequences[1]), ("shard-0", sequences[1])]
    assert len(tick.quotes) == 4


def test_children_wait_until_the_parent_is_read_to_its_end() -> None:
    kinesis = FakeKinesis(page=2)
    kinesis.add("parent")
    for minute in range(4):
        kinesis.put("parent", data("AAPL", minute))
    kinesis.shards["parent"].closed = True
    kinesis.add("child-a", ("parent",))
    kinesis.add("child-b", ("parent",))
    kinesis.put("child-a", data("AAPL", 10))
    kinesis.put("child-b", data("AAPL", 11))

    capped = read_tick(kinesis, None, max_quotes=3)  # stops inside the parent
    assert [int((q.event_time - T0).total_seconds() // 60) for q in capped.quotes] == [0, 1, 2]
    assert sorted(capped.waiting) == ["child-a", "child-b"] and "child" not in "".join(kinesis.reads)

    rest = read_tick(kinesis, capped.cursor.encode(), max_quotes=100)
    assert [int((q.event_time - T0).total_seconds() // 60) for q in rest.quotes] == [3, 10, 11]
    assert rest.cursor.finished == {"parent"}
    kinesis.reads.clear()
    read_tick(kinesis, rest.cursor.encode(), max_quotes=100)
    assert "parent" not in kinesis.reads  # a finished shard is never read again


def test_a_merge_waits_for_both_parents() -> None:
    shards = [Shard("c", ("a", "b"), None), Shard("b", (), "5"), Shard("a", (), "3")]
    assert [s.shard_id for s in reading_order(shards)] == ["a", "b", "c"]
    kinesis = FakeKinesis()
    kinesis.add("a")
    kinesis.add("b")
    kinesis.add("c", ("a", "b"))
    kinesis.put("a", data("A", 0))
    kinesis.shards["a"].closed = True
    kinesis.put("b", data("B", 1))  # b is still open
    kinesis.put("c", data("C", 2))
    tick = read_tick(kinesis, None, max_quotes=100)
    assert [q.ticker for q in tick.quotes] == ["A", "B"] and tick.waiting == ["c"]


def test_expired_shards_leave_the_cursor() -> None:
    kinesis = FakeKinesis()
    kinesis.add("new")
    old = StreamCursor({"gone": str(BASE), "new": str(BASE)}, {"gone"})
    tick = read_tick(kinesis, old.encode(), max_quotes=10)
    assert tick.cursor.positions == {"new": str(BASE)} and tick.cursor.finished == set()


def test_bad_records_are_rejected_with_their_text() -> None:
    kinesis = FakeKinesis()
    kinesis.add("s")
    kinesis.put("s", b"\xff not json")
    kinesis.put("s", json.dumps({"ticker": "AAPL", "event_time": "2024-03-04T10:00:00", "price": 1}).encode())
    tick = read_tick(kinesis, None, max_quotes=10)
    assert tick.quotes == [] and len(tick.rejected) == 2
    assert "time zone" in tick.rejected[1]["reason"] and tick.rejected[0]["shard"] == "s"


@pytest.mark.parametrize("cap", [1, 2, 5])
def test_at_least_once_nothing_is_skipped_whatever_the_cap(cap: int) -> None:
    kinesis = FakeKinesis(page=2)
    kinesis.add("s")
    for minute in range(7):
        kinesis.put("s", data("X", minute))
    cursor, got = None, []
    for _ in range(10):
        tick = read_tick(kinesis, cursor, max_quotes=cap)
        got += tick.quotes
        cursor = tick.cursor.encode()
    assert len(got) == 7
