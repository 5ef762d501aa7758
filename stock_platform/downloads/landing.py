"""Landing downloads in S3, idempotent and race-safe, with S3's conditional writes. Dagster-free.

- `raw/<day>/<ticker>.us.txt` is written with `IfNoneMatch='*'`: the first write wins and the object stays as
  the provider first answered (a forced re-download overwrites it).
- `Stocks/<file>` is read with its ETag, merged, and written back with `IfMatch=<etag>` (or `IfNoneMatch='*'` when
  it did not exist). Another writer in between makes S3 answer 412 PreconditionFailed, or 409
  ConditionalRequestConflict when the writes overlap; either way the file is read again and the merge redone, so
  two downloaders never lose each other's dates.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from stock_platform.batch.selection import company_of
from stock_platform.downloads.prices import Merge, PriceRow, merge_stock_file
from stock_platform.resources.s3 import is_missing, lost_race, precondition_failed, read_with_etag

MAX_MERGE_ATTEMPTS = 12


class ConflictError(RuntimeError):
    """A Stocks/ file kept changing under us for every attempt."""


@dataclass(frozen=True)
class StockUpdate:
    merge: Merge
    etag: str | None  # of the object written; None when nothing was written
    attempts: int


@dataclass
class Landing:
    """Where a download lands: one bucket (boto3 client), its stocks and raw prefixes."""

    client: Any
    bucket: str
    stocks_prefix: str = "Stocks/"
    raw_prefix: str = "raw/"
    sleep: Callable[[float], None] = time.sleep

    def raw_key(self, day: str, ticker: str) -> str:
        return f"{self.raw_prefix}{day}/{ticker}.us.txt"

    def stock_files(self) -> dict[str, list[str]]:
        """Company -> the names of its files directly under the stocks prefix (one, unless it is ambiguous)."""
        found: dict[str, list[str]] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.stocks_prefix, Delimiter="/"):
            for item in page.get("Contents", []):
                name = item["Key"][len(self.stocks_prefix) :]
                if name:
                    found.setdefault(company_of(name), []).append(name)
        return found

    def land_raw(self, key: str, data: bytes, force: bool) -> bool:
        """Write the raw object unless it exists (or `force`); True when this call wrote it."""
        extra: dict[str, Any] = {} if force else {"IfNoneMatch": "*"}
        for attempt in range(1, MAX_MERGE_ATTEMPTS + 1):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="text/csv", **extra)
                return True
            except ClientError as error:
                if precondition_failed(error):
                    return False  # first write wins
                if not lost_race(error) or attempt == MAX_MERGE_ATTEMPTS:
                    raise
                self._backoff(attempt)  # 409: a concurrent write of the same key is in flight
        return False

    def read(self, key: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and ETag, or (None, None) when there is no such object."""
        return read_with_etag(self.client, self.bucket, key)

    def update_stock_file(self, file_name: str, rows: Sequence[PriceRow], listed: bool = True) -> StockUpdate:
        """Merge `rows` into Stocks/<file_name>, retrying the read-merge-write when another writer got there first.

        A file the listing did not show (`listed=False`, a new ticker) is first written with `IfNoneMatch='*'`
        without a read: on AWS, a GET of a missing key answers 403, not 404, to a role that may list only a prefix
        (the downloader's), and the conditional write is what tells "still missing" apart anyway (412 otherwise).
        """
        key = self.stocks_prefix + file_name
        for attempt in range(1, MAX_MERGE_ATTEMPTS + 1):
            existing, etag = self.read(key) if listed or attempt > 1 else (None, None)
            merge = merge_stock_file(existing, rows)
            if merge.data is None:
                return StockUpdate(merge, None, attempt)
            condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
            try:
                response = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=merge.data, ContentType="text/csv", **condition
                )
            except ClientError as error:
                # 404 too: real S3 answers NoSuchKey to an IfMatch PUT when the object was deleted meanwhile.
                if not (lost_race(error) or is_missing(error)):
                    raise
                self._backoff(attempt)
                continue
            return StockUpdate(merge, str(response["ETag"]).strip('"'), attempt)
        raise ConflictError(f"s3://{self.bucket}/{key} changed under every one of {MAX_MERGE_ATTEMPTS} attempts")

    def _backoff(self, attempt: int) -> None:
        self.sleep(min(0.05 * 2 ** (attempt - 1), 2.0) * random.uniform(0.5, 1.5))


def write_marker(client: Any, bucket: str, key: str, changed: Sequence[str], run_id: str) -> str:
    """One `.SUCCESS` marker: its upload starts one batch run, which loads the companies whose files changed (the
    batch skips files whose ETag it already loaded). The body lists them for a person reading the bucket."""
    body = json.dumps({"run_id": run_id, "changed_companies": sorted(changed)}, indent=1).encode()
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return key
