"""One boto3 client per configuration and process: reused while nothing that shapes it changes."""

import pytest

from stock_platform.resources import aws


def test_a_client_is_reused_until_its_configuration_or_environment_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    retries = {"retries": {"mode": "standard", "total_max_attempts": 5}}
    first = aws.client("sqs", config=retries)
    assert aws.client("sqs", config={"retries": {"mode": "standard", "total_max_attempts": 5}}) is first
    assert first.meta.endpoint_url == "http://127.0.0.1:1"

    assert aws.client("sqs", config={"retries": {"mode": "standard", "total_max_attempts": 6}}) is not first
    assert aws.client("sns", config=retries) is not first
    assert aws.client("sqs", config=retries, region_name="eu-west-1") is not first

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")  # another endpoint: another client
    moved = aws.client("sqs", config=retries)
    assert moved is not first and moved.meta.endpoint_url == "http://127.0.0.1:2"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second")  # other credentials: another client
    assert aws.client("sqs", config=retries) is not moved
