"""The Kinesis data stream intraday quotes arrive on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from stock_platform.resources import aws


@dataclass(frozen=True)
class Shard:
    shard_id: str
    parents: tuple[str, ...]  # ParentShardId and AdjacentParentShardId (a merge has two)
    ending_sequence: str | None  # set once the shard is closed (split or merged)


@dataclass(frozen=True)
class Records:
    records: list[dict[str, Any]]  # {"SequenceNumber", "Data", "PartitionKey", ...}
    next_iterator: str | None  # None: the shard is closed and fully read
    millis_behind: int


class KinesisStream(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A Kinesis data stream: list its shards, read a shard after a sequence number, put records.

    Shaped like dagster-aws's S3Resource: typed fields, one `get_client()`, small domain methods.
    """

    stream_name: str = Field(description="Stream name (STOCK_PLATFORM_QUOTES_STREAM).")
    region_name: str | None = Field(default=None, description="AWS region; default: boto3's (AWS_REGION).")
    endpoint_url: str | None = Field(default=None, description="Kinesis endpoint; default: boto3's (AWS_ENDPOINT_URL).")
    max_attempts: int = Field(default=5, description="boto3 standard-mode attempts per request, the first included.")

    _client: Any = PrivateAttr(default=None)

    def get_client(self) -> Any:
        # Asked for on every request: the process's cache (which reads the environment) is consulted once.
        if self._client is None:
            self._client = aws.client(
                "kinesis",
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                config={"retries": {"mode": "standard", "total_max_attempts": self.max_attempts}},
            )
        return self._client

    def list_shards(self) -> list[Shard]:
        """Every shard still within the retention period, open and closed, following NextToken."""
        client = self.get_client()
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            response = client.list_shards(**kwargs)
            for item in response.get("Shards", []):
                parents = tuple(p for p in (item.get("ParentShardId"), item.get("AdjacentParentShardId")) if p)
                ending = item.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
                shards.append(Shard(item["ShardId"], parents, ending))
            token = response.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}  # ListShards refuses StreamName together with NextToken

    def shard_iterator(self, shard_id: str, after_sequence: str | None) -> str:
        """An iterator just after `after_sequence`, or at the oldest record kept (TRIM_HORIZON) for a new shard."""
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id}
        if after_sequence is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after_sequence)
        return str(self.get_client().get_shard_iterator(**kwargs)["ShardIterator"])

    def get_records(self, iterator: str, limit: int) -> Records:
        response = self.get_client().get_records(ShardIterator=iterator, Limit=max(1, min(limit, 10_000)))
        return Records(
            list(response.get("Records", [])),
            response.get("NextShardIterator"),
            int(response.get("MillisBehindLatest", 0)),
        )

    def put_records(self, records: Sequence[tuple[bytes, str]]) -> int:
        """Put (data, partition key) pairs, 500 per request, retrying the entries a request refused.

        Returns how many were put; raises when some are still refused after `max_attempts` rounds.
        """
        client = self.get_client()
        put = 0
        for start in range(0, len(records), 500):
            pending = [{"Data": data, "PartitionKey": key} for data, key in records[start : start + 500]]
            for _ in range(self.max_attempts):
                response = client.put_records(StreamName=self.stream_name, Records=pending)
                results = response.get("Records", [])
                failed = [entry for entry, result in zip(pending, results, strict=True) if result.get("ErrorCode")]
                put += len(pending) - len(failed)
                pending = failed
                if not pending:
                    break
            if pending:
                raise RuntimeError(f"{len(pending)} records were refused by stream {self.stream_name}")
        return put
