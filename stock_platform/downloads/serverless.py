"""Running the download in AWS Lambda from the asset, through Dagster Pipes (dagster-aws's PipesLambdaClient)."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import dagster as dg
from dagster_aws.pipes import PipesLambdaClient
from pydantic import Field

from stock_platform.downloads.run import DownloadRequest, DownloadResult


class ResponseKeeper:
    """A boto3 Lambda client that keeps the last response's payload: PipesLambdaClient reads only the log tail
    (4 KB), while the full per-ticker result comes back in the payload (up to 6 MB for a synchronous call)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.payload: bytes | None = None

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = dict(self.client.invoke(**kwargs))
        self.payload = response["Payload"].read()
        response["Payload"] = io.BytesIO(self.payload)  # PipesLambdaClient reads it again on a function error
        return response


class DownloadLambda(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The AWS Lambda function that runs the download instead of the Dagster step (empty: run in the step)."""

    function_name: str = Field(default="", description="Function name or ARN; empty runs the download in-process.")
    region_name: str | None = Field(default=None, description="The function's region (default: boto3's).")

    @property
    def enabled(self) -> bool:
        return bool(self.function_name)

    def lambda_client(self) -> Any:
        """The boto3 Lambda client (tests substitute one that runs the handler in-process)."""
        return boto3.client("lambda", region_name=self.region_name)

    def download(
        self, context: dg.AssetExecutionContext, request: DownloadRequest
    ) -> tuple[DownloadResult, dict[str, Any]]:
        """Invoke the function synchronously; return its result and the counts it reported through pipes."""
        keeper = ResponseKeeper(self.lambda_client())
        event = {"days": list(request.days), "run_id": request.run_id, "force": request.force}
        if request.tickers is not None:
            event["tickers"] = list(request.tickers)
        invocation = PipesLambdaClient(client=keeper).run(
            function_name=self.function_name, event=event, context=context
        )
        if keeper.payload is None:
            raise RuntimeError(f"The Lambda function {self.function_name} returned no payload")
        result = DownloadResult.from_json(json.loads(keeper.payload))
        messages = invocation.get_custom_messages()
        counts: dict[str, Any] = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        return result, counts
