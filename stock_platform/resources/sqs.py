"""The SQS queue the monitored bucket's S3 event notifications go to: what the queue-fed marker trigger reads."""

from collections.abc import Sequence
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from stock_platform.resources import aws


class MarkerQueue(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The SQS queue the monitored bucket's S3 event notifications (s3:ObjectCreated:*) are delivered to."""

    queue_url: str = Field(description="Queue URL (STOCK_PLATFORM_MARKER_QUEUE_URL).")
    region_name: str | None = Field(default=None, description="AWS region; default: boto3's (AWS_REGION).")
    endpoint_url: str | None = Field(default=None, description="SQS endpoint; default: boto3's (AWS_ENDPOINT_URL).")
    visibility_timeout_seconds: int = Field(
        default=300,
        description="How long a received message stays hidden: a message whose run request was never recorded "
        "(the daemon stopped mid-tick) comes back after this long.",
    )

    _client: Any = PrivateAttr(default=None)

    def get_client(self) -> Any:
        # Asked for on every request: the process's cache (which reads the environment) is consulted once.
        if self._client is None:
            self._client = aws.client(
                "sqs",
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                config={"retries": {"mode": "standard", "total_max_attempts": 5}},
            )
        return self._client

    def receive(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` messages (fewer when the queue has fewer), without waiting for more to arrive."""
        client = self.get_client()
        messages: list[dict[str, Any]] = []
        while len(messages) < limit:
            batch = client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, limit - len(messages)),  # SQS's maximum per call
                VisibilityTimeout=self.visibility_timeout_seconds,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                break
            messages += batch
        return messages

    def delete(self, receipt_handles: Sequence[str]) -> None:
        """Delete the messages. A handle that is no longer valid (the message was received again since) is
        skipped: the later receipt's handle deletes the message."""
        client = self.get_client()
        for start in range(0, len(receipt_handles), 10):
            chunk = receipt_handles[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]
            failed = client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed", [])
            unexpected = [f for f in failed if f.get("Code") != "ReceiptHandleIsInvalid"]
            if unexpected:
                raise RuntimeError(f"Could not delete {len(unexpected)} message(s) from {self.queue_url}: {unexpected}")
