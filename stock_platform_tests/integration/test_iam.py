"""The shipped least-privilege policy, enforced: moto's server with IAM checks on (INITIAL_NO_AUTH_ACTION_COUNT)."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from stock_platform.local import sample
from stock_platform.local.report import execute_batch
from stock_platform.local.stack import PROJECT_ROOT
from stock_platform_tests.iam import keys_for

pytestmark = pytest.mark.integration
POLICY = PROJECT_ROOT / "deploy" / "iam" / "pipeline-policy.json"


def test_pipeline_runs_with_only_its_policy_and_nothing_more(enforcing_moto, stack, instance, monkeypatch) -> None:
    endpoint = enforcing_moto
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    unauthenticated = boto3.client("iam", endpoint_url=endpoint)
    admin = keys_for(
        unauthenticated,
        "admin",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    )
    s3 = boto3.client("s3", endpoint_url=endpoint, **admin)
    bucket = stack.bucket + "-iam"
    s3.create_bucket(Bucket=bucket)
    topic = boto3.client("sns", endpoint_url=endpoint, **admin).create_topic(Name="pipeline")["TopicArn"]
    other_topic = boto3.client("sns", endpoint_url=endpoint, **admin).create_topic(Name="not-ours")["TopicArn"]
    sample.upload(
        sample.generate(companies=8, listed=5, min_rows=200, max_rows=300),
        lambda k, d: s3.put_object(Bucket=bucket, Key=k, Body=d),
    )

    policy = json.loads(
        POLICY.read_text()
        .replace("SOURCE_BUCKET", bucket)
        .replace("MONITORED_BUCKET", bucket)
        .replace("TOPIC_ARN", topic)
    )
    pipeline = keys_for(boto3.client("iam", endpoint_url=endpoint, **admin), "pipeline", policy)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", pipeline["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", pipeline["aws_secret_access_key"])
    monkeypatch.setenv("STOCK_PLATFORM_SOURCE_BUCKET", bucket)
    monkeypatch.setenv("STOCK_PLATFORM_SNS_TOPIC_ARN", topic)

    outcome = execute_batch(instance=instance)  # also tries to publish its notification with the same credentials
    assert outcome.success, outcome.error
    # moto checks SNS actions against resource "*" (moto/core/responses.py, call_action: SNS has no
    # _determine_resource), so it refuses even the topic the policy names, which AWS allows. What it does show:
    # a refused notification leaves the run a success and is kept for the retry sensor.
    run = instance.get_run_by_id(outcome.run_id)
    assert outcome.notification_id is None and run.tags["stock_platform/notification"] == "pending"
    assert stack.query("SELECT count(DISTINCT company_name) FROM {t}")[0][0] > 0

    # Pruning a company that left the list deletes its frame: the one deletion the policy allows.
    listed = s3.get_object(Bucket=bucket, Key="CompanyNames/top_companies.txt")["Body"].read().decode()
    first, rest = listed.split(",", 1)
    gone = first.strip().strip("'\"").split(".")[0]
    s3.put_object(Bucket=bucket, Key="CompanyNames/top_companies.txt", Body=rest.encode())
    pruned = execute_batch(instance=instance, prune_unlisted=True)
    assert pruned.success, pruned.error
    assert pruned.summary is not None and pruned.summary.commit is not None and pruned.summary.commit.pruned == (gone,)
    assert not s3.list_objects_v2(Bucket=bucket, Prefix=f"Processed/company={gone}/").get("Contents")

    as_pipeline = boto3.client("s3", endpoint_url=endpoint, **pipeline)
    as_pipeline.put_object(Bucket=bucket, Key="Output/allowed.csv", Body=b"x")
    for key in ("Stocks/evil.us.txt", "CompanyNames/top_companies.txt", "elsewhere/x"):
        with pytest.raises(ClientError) as denied:
            as_pipeline.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as denied:
        as_pipeline.delete_object(Bucket=bucket, Key="Stocks/badr.us.txt")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as denied:
        boto3.client("sns", endpoint_url=endpoint, **pipeline).publish(TopicArn=other_topic, Message="x")
    assert denied.value.response["Error"]["Code"] in ("AccessDenied", "AuthorizationError")
