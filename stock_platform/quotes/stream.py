"""Reading the quote stream for one sensor tick: which shards, from where, and the cursor after it. Dagster-free.

The cursor is JSON: each shard's last sequence number read, and the closed shards already read to their end.
Sequence numbers are decimal strings of up to 128 bits (moto's are small integers; AWS's are 56 digits), so they
are compared as Python ints, never as text or floats. Resharding is followed through ListShards every tick: a
child shard is read only once its parent(s) are drained (closed and read to their end, or expired from the
stream), so a ticker's quotes keep their order across a split or merge; a shard the cursor has never seen starts
at TRIM_HORIZON. A shard iterator lives five minutes on AWS, so an expired one is replaced by a new iterator just
after the last sequence number read (`ExpiredIteratorException`).

Delivery is at-least-once: a tick whose run request is lost, or a cursor that was not saved, reads the same
records again, and everything downstream de-duplicates on (ticker, event time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from botocore.exceptions import ClientError

from stock_platform.quotes.model import Quote, QuoteError, parse_record
from stock_platform.resources.kinesis import Records, Shard

MAX_CALLS_PER_SHARD = 25  # GetRecords calls per shard per tick: bounds a tick on a shard that keeps growing
MAX_EMPTY_CALLS = 3  # an empty answer while behind the tip is normal on AWS; stop after a few in a row


class Stream(Protocol):
    def list_shards(self) -> list[Shard]: ...
    def shard_iterator(self, shard_id: str, after_sequence: str | None) -> str: ...
    def get_records(self, iterator: str, limit: int) -> Records: ...


@dataclass
class StreamCursor:
    positions: dict[str, str] = field(default_factory=dict)  # shard id -> last sequence number read
    finished: set[str] = field(default_factory=set)  # closed shards read to their end (NextShardIterator null)

    @classmethod
    def decode(cls, text: str | None) -> StreamCursor:
        if not text:
            return cls()
        state = json.loads(text)
        return cls(dict(state.get("positions", {})), set(state.get("finished", [])))

    def encode(self) -> str:
        return json.dumps(
            {"positions": dict(sorted(self.positions.items())), "finished": sorted(self.finished)},
            separators=(",", ":"),
        )

    def advance(self, shard_id: str, sequence: str) -> None:
        """Move a shard's position forward; never backward (sequence numbers compared as integers)."""
        current = self.positions.get(shard_id)
        if current is None or int(sequence) > int(current):
            self.positions[shard_id] = sequence

    def is_new(self, shard_id: str, sequence: str) -> bool:
        current = self.positions.get(shard_id)
        return current is None or int(sequence) > int(current)


@dataclass
class TickRead:
    quotes: list[Quote]
    rejected: list[dict[str, str]]  # {"shard", "sequence", "reason", "data"}: kept with the batch, never dropped
    cursor: StreamCursor
    records_per_shard: dict[str, int]
    waiting: list[str]  # child shards not read yet because a parent is still being drained
    capped: bool  # the tick stopped at its quote limit: more records are waiting

    @property
    def records(self) -> int:
        return sum(self.records_per_shard.values())


def reading_order(shards: list[Shard]) -> list[Shard]:
    """Parents before children (then by shard id): the order a tick reads shards in. Pure."""
    listed = {s.shard_id: s for s in shards}
    placed: set[str] = set()
    order: list[Shard] = []
    remaining = sorted(shards, key=lambda s: s.shard_id)
    while remaining:
        ready = [s for s in remaining if all(p not in listed or p in placed for p in s.parents)]
        if not ready:  # a cycle cannot happen in Kinesis; never loop forever on a malformed listing
            ready = remaining
        for shard in ready:
            placed.add(shard.shard_id)
            order.append(shard)
        remaining = [s for s in remaining if s.shard_id not in placed]
    return order


def _is_expired(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") == "ExpiredIteratorException")


def read_tick(stream: Stream, cursor_text: str | None, max_quotes: int, default_source: str = "kinesis") -> TickRead:
    """Read at most `max_quotes` new records from every readable shard; return them and the cursor after them."""
    cursor = StreamCursor.decode(cursor_text)
    shards = stream.list_shards()
    listed = {s.shard_id for s in shards}
    # Shards gone from the listing have expired with their records: forget them so the cursor stays small.
    cursor.positions = {k: v for k, v in cursor.positions.items() if k in listed}
    cursor.finished &= listed
    drained = set(cursor.finished)
    result = TickRead([], [], cursor, {}, [], False)
    budget = max_quotes
    for shard in reading_order(shards):
        if any(p in listed and p not in drained for p in shard.parents):
            result.waiting.append(shard.shard_id)
            continue
        if shard.shard_id in cursor.finished:
            continue
        if budget <= 0:
            result.capped = True
            break
        read, caught_up = _read_shard(stream, shard, cursor, budget, result, default_source)
        budget -= read
        # A closed shard read to its tip is drained: its children may start. moto keeps routing puts to a split
        # parent, so a drained (but not finished) parent is still polled on later ticks.
        if shard.shard_id in cursor.finished or (shard.ending_sequence is not None and caught_up):
            drained.add(shard.shard_id)
    return result


def _read_shard(
    stream: Stream, shard: Shard, cursor: StreamCursor, budget: int, result: TickRead, default_source: str
) -> tuple[int, bool]:
    """Read one shard from its cursor position; return (records read, caught up with the shard's tip)."""
    shard_id = shard.shard_id
    iterator: str | None = stream.shard_iterator(shard_id, cursor.positions.get(shard_id))
    read = empty = 0
    for _ in range(MAX_CALLS_PER_SHARD):
        if iterator is None:
            break
        try:
            answer = stream.get_records(iterator, budget - read)
        except ClientError as error:
            if not _is_expired(error):
                raise
            iterator = stream.shard_iterator(shard_id, cursor.positions.get(shard_id))
            continue
        fresh = 0
        for record in answer.records:
            sequence = str(record["SequenceNumber"])
            if not cursor.is_new(shard_id, sequence):
                continue  # already read: an iterator re-taken after an expiry may repeat the last record
            data = bytes(record["Data"])
            try:
                result.quotes.append(parse_record(data, default_source))
            except QuoteError as error:
                result.rejected.append(
                    {
                        "shard": shard_id,
                        "sequence": sequence,
                        "reason": str(error),
                        "data": data.decode("utf-8", "replace"),
                    }
                )
            cursor.advance(shard_id, sequence)
            fresh += 1
        read += fresh
        result.records_per_shard[shard_id] = result.records_per_shard.get(shard_id, 0) + fresh
        iterator = answer.next_iterator
        if iterator is None:
            cursor.finished.add(shard_id)
            return read, True
        if read >= budget:
            result.capped = True
            return read, False
        if answer.millis_behind == 0 and not answer.records:
            return read, True
        empty = empty + 1 if not answer.records else 0
        if empty >= MAX_EMPTY_CALLS:
            return read, answer.millis_behind == 0
    return read, False
