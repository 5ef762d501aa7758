"""The SNS topic the platform publishes to: run notifications now, price alerts later."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from stock_platform.resources import aws


class SNSResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """An Amazon SNS topic the platform publishes run notifications to (e-mail subscribers, SQS, ...).

    Shaped like dagster-aws's S3Resource: typed fields, one `get_client()`, one domain method.
    """

    topic_arn: str = Field(description="Topic to publish to (STOCK_PLATFORM_SNS_TOPIC_ARN).")
    region_name: str | None = Field(default=None, description="AWS region; default: boto3's (AWS_REGION).")
    endpoint_url: str | None = Field(default=None, description="SNS endpoint; default: boto3's (AWS_ENDPOINT_URL).")
    max_attempts: int = Field(
        default=6,
        description="boto3 standard-mode attempts per publish, the first included (exponential backoff with jitter).",
    )
    connect_timeout: float = Field(default=5.0, description="Seconds to wait for a connection to SNS.")
    subject_prefix: str = Field(
        default="StockPlatform", description="Subjects read <prefix>_Pipeline_Success / _Failure."
    )
    ui_base_url: str | None = Field(
        default="http://localhost:3000", description="Dagster UI base URL for the run link in each message."
    )

    def get_client(self) -> Any:
        return aws.client(
            "sns",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            config={
                "retries": {"mode": "standard", "total_max_attempts": self.max_attempts},
                "connect_timeout": self.connect_timeout,
                "read_timeout": 10,
            },
        )

    def publish(self, subject: str, message: str, attributes: Mapping[str, str | float]) -> str:
        """Publish one message; return its SNS message id. Raises after the retries are spent.

        A number attribute is sent as SNS's Number type, so subscription filter policies can compare it
        (`{"move": [{"numeric": [">=", 2]}]}`).
        """
        response = self.get_client().publish(
            TopicArn=self.topic_arn,
            Subject=subject,
            Message=message,
            MessageAttributes={name: _attribute(value) for name, value in attributes.items()},
        )
        return str(response["MessageId"])


def _attribute(value: str | float) -> dict[str, str]:
    if isinstance(value, str):
        return {"DataType": "String", "StringValue": value}
    return {"DataType": "Number", "StringValue": repr(float(value))}
