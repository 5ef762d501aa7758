"""The shipped least-privilege policies, enforced: moto's server with IAM checks on (INITIAL_NO_AUTH_ACTION_COUNT).

The pipeline's policy runs a batch; with the quotes policy added (the same task role on the stack), the intraday
path runs: a staged batch, the monthly log, the lake parts and their compaction.
"""

import json
import uuid
from datetime import date, datetime
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.exceptions import ClientError

from stock_platform.local import sample
from stock_platform.local.report import execute_batch
from stock_platform.local.stack import FAKE_AWS_ENV, PROJECT_ROOT
from stock_platform.quotes.lake import COMPACTED_NAME, compact_day
from stock_platform.quotes.model import Quote, decode_batch, encode_batch
from stock_platform.quotes.monthly_log import month_key
from stock_platform.quotes.pipeline import ingest
from stock_platform.quotes.settings import IntradayConfig
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import SourceBucket
from stock_platform_tests.iam import keys_for

pytestmark = pytest.mark.integration
POLICY = PROJECT_ROOT / "deploy" / "iam" / "pipeline-policy.json"
QUOTES_POLICY = PROJECT_ROOT / "deploy" / "iam" / "quotes-policy.json"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


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


def test_the_quote_path_runs_with_the_pipeline_and_quotes_policies_and_nothing_more(
    enforcing_moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    admin = keys_for(boto3.client("iam", endpoint_url=enforcing_moto), "admin", ALLOW_ALL)
    s3 = boto3.client("s3", endpoint_url=enforcing_moto, **admin)
    name = f"quotes-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    topic = boto3.client("sns", endpoint_url=enforcing_moto, **admin).create_topic(Name="alerts")["TopicArn"]
    values = {
        "SOURCE_BUCKET": name,
        "MONITORED_BUCKET": name,
        "TOPIC_ARN": topic,
        "ALERTS_TOPIC": topic,
        "STREAM_ARN": "arn:aws:kinesis:us-east-1:123456789012:stream/quotes",
    }

    def filled(path) -> str:
        text = path.read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    iam = boto3.client("iam", endpoint_url=enforcing_moto, **admin)
    iam.create_user(UserName="pipeline")
    for policy in (POLICY, QUOTES_POLICY):  # two policies, as the task role holds them
        iam.put_user_policy(UserName="pipeline", PolicyName=policy.stem, PolicyDocument=filled(policy))
    access = iam.create_access_key(UserName="pipeline")["AccessKey"]
    keys = {"aws_access_key_id": access["AccessKeyId"], "aws_secret_access_key": access["SecretAccessKey"]}
    bucket = SourceBucket(bucket=name, endpoint_url=enforcing_moto, **keys)

    new_york = ZoneInfo("America/New_York")
    quotes = [
        Quote("AAPL", datetime(2026, 1, 9, 10, 0, tzinfo=new_york), 190.0, 100, "test"),
        Quote("AAPL", datetime(2026, 1, 9, 10, 1, tzinfo=new_york), 191.5, 20, "test"),
        Quote("MSFT", datetime(2026, 1, 9, 10, 0, tzinfo=new_york), 402.0, 50, "test"),
    ]
    intraday = IntradayConfig()
    staged = f"{intraday.staging_prefix}tick-1.json"
    bucket.put_bytes(staged, encode_batch(quotes), "application/json")  # as quote_stream_sensor stages a tick
    batch, _ = decode_batch(bucket.get_bytes(staged))  # as the ingest run reads it
    unused = PostgresResource(url="postgresql://nobody@127.0.0.1:1/none")  # no landing, no alerts: never opened
    for batch_id in ("tick-1", "tick-2"):  # the second delivery adds nothing to the log, and a second set of parts
        result = ingest(
            batch, bucket=bucket, postgres=unused, intraday=intraday, batch_id=batch_id, run_id=None, alerts=None
        )
        assert sum(len(a.added) for a in result.appended.values()) == (3 if batch_id == "tick-1" else 0)
        assert sum(result.parts_by_month.values()) == 2
    done = compact_day(bucket, intraday.lake_prefix, date(2026, 1, 9))
    assert (done.tickers, done.parts_deleted, done.rows) == (2, 4, 3)
    day = f"{intraday.lake_prefix}date=2026-01-09/"
    assert sorted(o.key for o in bucket.list_objects(day)) == [
        f"{day}ticker=AAPL/{COMPACTED_NAME}",
        f"{day}ticker=MSFT/{COMPACTED_NAME}",
    ]

    as_pipeline = boto3.client("s3", endpoint_url=enforcing_moto, **keys)

    def refused(call, **kwargs) -> str:
        with pytest.raises(ClientError) as error:
            call(Bucket=name, **kwargs)
        return str(error.value.response["Error"]["Code"])

    for kept in (f"{day}ticker=AAPL/{COMPACTED_NAME}", month_key(intraday.log_prefix, "202601"), staged):
        assert refused(as_pipeline.delete_object, Key=kept) == "AccessDenied", kept
    for key in ("Stocks/aapl.us.txt", "Lake/other/x.parquet", "Staging/other/x.json", "QuotesX/202601.csv"):
        assert refused(as_pipeline.put_object, Key=key, Body=b"x") == "AccessDenied", key
    # Not shown here: Kinesis and SNS, which moto's IAM checks against resource "*" (see the batch test above), so
    # it would refuse the stream and topic the policy names; their scoping is checked on the template
    # (unit/test_deploy_config.py).
