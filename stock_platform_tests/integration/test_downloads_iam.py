"""The downloader's shipped policy, enforced: a real download (list, company list, raw/, Stocks/, marker) succeeds
with deploy/iam/downloader-policy.json and nothing more, and everything else is refused."""

import json
from datetime import date

import boto3
import pytest
from botocore.exceptions import ClientError

from stock_platform.local.fake_provider import start_fake_provider
from stock_platform.local.stack import PROJECT_ROOT
from stock_platform_tests.iam import keys_for
from stock_platform_tests.integration.test_downloads_landing import DAY, download, materialization

pytestmark = pytest.mark.integration
POLICY = PROJECT_ROOT / "deploy" / "iam" / "downloader-policy.json"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def test_a_download_runs_with_only_the_downloader_policy(enforcing_moto, stack, instance, monkeypatch) -> None:
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    admin = keys_for(boto3.client("iam", endpoint_url=enforcing_moto), "admin", ALLOW_ALL)
    s3 = boto3.client("s3", endpoint_url=enforcing_moto, **admin)
    bucket = stack.bucket + "-dl"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="CompanyNames/top_companies.txt", Body=b"'aapl.us.csv', 'msft.us.csv'\n")
    s3.put_object(Bucket=bucket, Key="Stocks/aapl.us.txt", Body=b"Date,Open,High,Low,Close,Volume,OpenInt\n")
    policy = json.loads(POLICY.read_text().replace("SOURCE_BUCKET", bucket).replace("MONITORED_BUCKET", bucket))
    downloader = keys_for(boto3.client("iam", endpoint_url=enforcing_moto, **admin), "downloader", policy)

    fake = start_fake_provider(last_day=date(2026, 1, 9))
    try:
        for name, value in {
            "AWS_ENDPOINT_URL": enforcing_moto,
            "AWS_ACCESS_KEY_ID": downloader["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": downloader["aws_secret_access_key"],
            "STOCK_PLATFORM_SOURCE_BUCKET": bucket,
            "STOCK_PLATFORM_PRICE_BASE_URL": fake.base_url,
            "STOCK_PLATFORM_PRICE_REQUESTS_PER_SECOND": "100",
        }.items():
            monkeypatch.setenv(name, value)
        result = download(instance, tickers=())  # the watchlist: the company list, read with the policy
    finally:
        fake.stop()
    meta = materialization(result)
    assert meta["tickers_downloaded"] == 2 and meta["tickers_unavailable"] == 0, meta["per_ticker"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {f"raw/{DAY}/aapl.us.txt", f"raw/{DAY}/msft.us.txt", "Stocks/msft.us.txt"} <= keys
    markers = [k for k in keys if k.endswith(".SUCCESS")]
    assert len(markers) == 1 and markers[0].startswith(f"downloads/{DAY}/"), markers  # the only place it may mark

    as_downloader = boto3.client("s3", endpoint_url=enforcing_moto, **downloader)

    def refused(call, **kwargs) -> str:
        with pytest.raises(ClientError) as error:
            call(Bucket=bucket, **kwargs)
        return str(error.value.response["Error"]["Code"])

    for key in (
        "Output/historical_stock_data.csv",
        "Processed/company=aapl/prices.parquet",
        "CompanyNames/x.txt",
        "batch.SUCCESS",  # a marker anywhere else would start a batch the downloader did not ask for
    ):
        assert refused(as_downloader.put_object, Key=key, Body=b"x") == "AccessDenied", key
    assert refused(as_downloader.delete_object, Key="Stocks/aapl.us.txt") == "AccessDenied"
    assert refused(as_downloader.delete_object, Key=f"raw/{DAY}/aapl.us.txt") == "AccessDenied"
    assert refused(as_downloader.get_object, Key=f"raw/{DAY}/aapl.us.txt") == "AccessDenied"
    # Not asserted: listing outside Stocks/ is refused by the policy's s3:prefix condition, which moto does not
    # evaluate (it allows the ListBucket action whatever the prefix).
