"""The monthly log `Quotes/<YYYYMM>.csv`: one object per month on the exchange's calendar, one row per quote.

An append is a read-modify-write of the whole object made safe by S3 conditional writes: read the object and
its ETag, merge (skipping (ticker, event time) pairs already present), and PUT with `IfMatch=<etag>`, or
`IfNoneMatch='*'` when the month does not exist yet. A concurrent writer makes the PUT fail with 412 (or 409
ConditionalRequestConflict, which real S3 answers when two conditional writes race), and the append starts over
from a fresh read, so no writer ever overwrites another's rows.
"""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from botocore.exceptions import ClientError

from stock_platform.quotes.model import Quote
from stock_platform.resources.s3 import S3Bucket, lost_race, read_with_etag

HEADER: tuple[str, ...] = ("ticker", "event_time", "price", "volume", "source")


class MonthlyLogConflict(RuntimeError):
    """Every attempt to append lost the race to a concurrent writer."""


@dataclass(frozen=True)
class MonthFacts:
    """What an asset check needs to know about one month's object."""

    rows: int
    duplicate_keys: tuple[tuple[str, str], ...]  # (ticker, event time) present more than once
    out_of_order_rows: tuple[int, ...]  # 1-based data row numbers whose time is earlier than the row before


@dataclass(frozen=True)
class Merged:
    data: bytes
    added: tuple[Quote, ...]  # the quotes that were not in the month yet
    rows: int  # rows in the merged month
    facts: MonthFacts  # of exactly the rows in `data`


@dataclass(frozen=True)
class Appended:
    key: str
    added: tuple[Quote, ...]
    rows: int
    attempts: int
    etag: str
    facts: MonthFacts  # of the object as stored under `etag`: the checks' evidence, without reading it again


def _row(quote: Quote) -> list[str]:
    return [
        quote.ticker,
        quote.time_text,
        repr(quote.price),
        "" if quote.volume is None else str(quote.volume),
        quote.source,
    ]


def read_rows(data: bytes | None) -> list[list[str]]:
    """The data rows of a month's object (header dropped); nothing for a month that does not exist yet."""
    if not data:
        return []
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    rows = [row for row in reader if row]
    if rows and tuple(rows[0]) == HEADER:
        rows = rows[1:]
    return rows


def merge_month(existing: bytes | None, quotes: Sequence[Quote]) -> Merged:
    """The month with `quotes` merged in: rows already present (by ticker and event time) are skipped, and all
    rows are written in time order (then ticker), whatever order the quotes arrived in. Pure."""
    rows = read_rows(existing)
    present = {(r[0], r[1]) for r in rows if len(r) >= 2}
    added: list[Quote] = []
    for quote in quotes:
        if quote.key not in present:
            present.add(quote.key)
            added.append(quote)
            rows.append(_row(quote))
    # Canonical times are fixed-width UTC text, so sorting the text sorts the instants.
    rows.sort(key=lambda r: (r[1], r[0]) if len(r) >= 2 else ("", ""))
    sink = io.StringIO(newline="")
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return Merged(sink.getvalue().encode("utf-8"), tuple(added), len(rows), inspect_rows(rows))


def inspect_month(data: bytes | None) -> MonthFacts:
    """Duplicate keys and rows out of time order in a month's object. Pure."""
    return inspect_rows(read_rows(data))


def inspect_rows(rows: Sequence[Sequence[str]]) -> MonthFacts:
    seen: set[tuple[str, str]] = set()
    duplicates: list[tuple[str, str]] = []
    out_of_order: list[int] = []
    previous = ""
    for number, row in enumerate(rows, start=1):
        key = (row[0], row[1]) if len(row) >= 2 else (",".join(row), "")
        if key in seen and key not in duplicates:
            duplicates.append(key)
        seen.add(key)
        if key[1] < previous:
            out_of_order.append(number)
        previous = max(previous, key[1])
    return MonthFacts(len(rows), tuple(duplicates), tuple(out_of_order))


def month_key(prefix: str, month: str) -> str:
    return f"{prefix}{month}.csv"


def read_month(bucket: S3Bucket, key: str) -> tuple[bytes | None, str | None]:
    """The month's bytes and ETag, or (None, None) when the month has no object yet."""
    try:
        return read_with_etag(bucket.get_client(), bucket.bucket, key)
    except ClientError as error:
        raise RuntimeError(f"Could not read {bucket.uri(key)}: {error}") from error


def append_to_month(
    bucket: S3Bucket,
    key: str,
    quotes: Sequence[Quote],
    max_attempts: int = 30,
    sleep: Callable[[float], None] = time.sleep,
) -> Appended:
    """Append `quotes` to the month at `key`, skipping those already present; retried on a concurrent write.

    Nothing is written when every quote is already there. Raises MonthlyLogConflict after `max_attempts`.
    """
    client = bucket.get_client()
    for attempt in range(1, max_attempts + 1):
        existing, etag = read_month(bucket, key)
        merged = merge_month(existing, quotes)
        if not merged.added:
            return Appended(key, (), merged.rows, attempt, (etag or "").strip('"'), merged.facts)
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            response = client.put_object(
                Bucket=bucket.bucket, Key=key, Body=merged.data, ContentType="text/csv", **condition
            )
        except ClientError as error:
            if not lost_race(error):
                raise RuntimeError(f"Could not write {bucket.uri(key)}: {error}") from error
            # Another writer got in first: back off with jitter so eight writers do not keep colliding.
            sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
            continue
        stored = str(response["ETag"]).strip('"')
        return Appended(key, merged.added, merged.rows, attempt, stored, merged.facts)
    raise MonthlyLogConflict(
        f"Could not append to {bucket.uri(key)}: {max_attempts} attempts each lost to a concurrent writer"
    )
