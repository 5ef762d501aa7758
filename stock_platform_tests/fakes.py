"""Fakes for unit tests (integration tests use moto's server instead)."""

from typing import ClassVar

from stock_platform.resources.sns import SNSResource


class RecordingSNS(SNSResource):
    """An SNSResource that records what it would publish, or fails like an unreachable endpoint."""

    fail: bool = False
    # Class-level: Dagster may copy a resource when it initialises it, so instance state would be lost.
    sent: ClassVar[list[tuple[str, str, dict[str, str]]]] = []

    def publish(self, subject: str, message: str, attributes: dict[str, str]) -> str:
        if self.fail:
            raise ConnectionError("Could not connect to the endpoint URL: https://sns.us-east-1.amazonaws.com/")
        RecordingSNS.sent.append((subject, message, attributes))
        return f"message-{len(RecordingSNS.sent)}"
