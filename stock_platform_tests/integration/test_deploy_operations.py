"""What deploy/ documents, done for real: deploy/README.md's restore of the table from the Parquet frames, run as
written against the local stack; iam/downloader-policy.json under moto's IAM enforcement (as test_iam.py does for the
pipeline's policy).
"""

import json
import re
import textwrap
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from stock_platform.downloads.run import DownloadRequest, MarkerTarget
from stock_platform.local import sample
from stock_platform.local.report import execute_batch
from stock_platform.local.stack import FAKE_AWS_ENV, PROJECT_ROOT
from stock_platform_tests.iam import keys_for

pytestmark = pytest.mark.integration

DEPLOY = PROJECT_ROOT / "deploy"


def test_the_documented_restore_rebuilds_the_table_from_the_frames(stack, instance) -> None:
    sample.upload(sample.generate(companies=8, listed=5, min_rows=50, max_rows=80), stack.put)
    outcome = execute_batch(instance=instance)
    assert outcome.success, outcome.error
    (snippet,) = re.findall(r"```python\n(.*?)```", (DEPLOY / "README.md").read_text(), re.S)
    snippet = textwrap.dedent(snippet)
    with stack.connect() as conn:
        dsn = conn.info.dsn
    restored_schema = f"restored_{stack.schema}"
    for placeholder_text, value in {
        '"postgresql://<user>@<host>:5432/<database>?sslmode=require"': repr(dsn),
        '"stocks"': repr(restored_schema),
    }.items():
        assert placeholder_text in snippet
        snippet = snippet.replace(placeholder_text, value)
    exec(compile(snippet, "deploy/README.md", "exec"), {})  # the documented procedure itself

    order = "ORDER BY company_name, stock_date"
    with stack.connect() as conn:
        restored = conn.execute(f'SELECT * FROM "{restored_schema}".historical_stocks_data {order}').fetchall()
        conn.execute(f'DROP SCHEMA "{restored_schema}" CASCADE')
    original = stack.query(f"SELECT * FROM {{t}} {order}")
    assert len(original) > 100 and restored == original


def test_the_downloader_writes_downloads_and_markers_and_nothing_else(enforcing_moto: str, monkeypatch) -> None:
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    admin = keys_for(
        boto3.client("iam", endpoint_url=enforcing_moto),
        "admin",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    )
    s3_admin = boto3.client("s3", endpoint_url=enforcing_moto, **admin)
    source, monitored = f"source-{uuid.uuid4().hex[:8]}", f"monitored-{uuid.uuid4().hex[:8]}"
    for bucket in (source, monitored):
        s3_admin.create_bucket(Bucket=bucket)
    s3_admin.put_object(Bucket=source, Key="CompanyNames/top_companies.txt", Body=b"aapl")
    s3_admin.put_object(Bucket=source, Key="Stocks/aapl.us.txt", Body=b"Date,Open\n")
    policy = json.loads(
        (DEPLOY / "iam" / "downloader-policy.json")
        .read_text()
        .replace("MONITORED_BUCKET", monitored)
        .replace("SOURCE_BUCKET", source)
    )
    downloader = boto3.client(
        "s3",
        endpoint_url=enforcing_moto,
        **keys_for(boto3.client("iam", endpoint_url=enforcing_moto, **admin), "downloader", policy),
    )

    marker = MarkerTarget(client=None, bucket=monitored).key(DownloadRequest(("2024-01-02",), "run-1"))
    for bucket, key in [
        (source, "raw/2024-01-02/aapl.json"),
        (source, "Stocks/aapl.us.txt"),
        (monitored, marker),  # downloads/2024-01-02/run-1.SUCCESS, as the package names it
    ]:
        downloader.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert downloader.get_object(Bucket=source, Key="CompanyNames/top_companies.txt")["Body"].read() == b"aapl"

    def denied(call, **kwargs) -> str:
        with pytest.raises(ClientError) as error:
            call(**kwargs)
        return error.value.response["Error"]["Code"]

    for bucket, key in [
        (source, "Output/historical_stock_data.csv"),
        (source, "Processed/company=aapl/prices.parquet"),
        (source, "CompanyNames/top_companies.txt"),
        (source, "elsewhere/x"),
        (monitored, "not-a-marker"),
        (monitored, "downloads/not-a-marker"),
        # A marker outside downloads/ would start a batch the downloader did not ask for.
        (monitored, "batch-2024-01-02.SUCCESS"),
        (source, "batch-2024-01-02.SUCCESS"),
        (source, marker),
    ]:
        assert denied(downloader.put_object, Bucket=bucket, Key=key, Body=b"x") == "AccessDenied", key
    assert denied(downloader.delete_object, Bucket=source, Key="Stocks/aapl.us.txt") == "AccessDenied"
    assert denied(downloader.get_object, Bucket=source, Key="Output/x") == "AccessDenied"
