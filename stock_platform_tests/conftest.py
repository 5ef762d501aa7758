"""Shared fixtures: moto's HTTP server, a real PostgreSQL, and an isolated bucket + schema per test.

PostgreSQL is the embedded pgserver (data in a temporary folder) unless STOCK_PLATFORM_TEST_DATABASE_URL points
at another server, e.g. the machine's: `make test-tcp`.
"""

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import boto3
import dagster as dg
import psycopg
import pytest

from stock_platform.local.stack import FAKE_AWS_ENV, start_moto, start_pgserver
from stock_platform.resources.postgres import PostgresResource

# Fixtures shared by the least-privilege tests (moto with IAM enforced).
pytest_plugins = ["stock_platform_tests.iam"]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_moto(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    yield server.endpoint
    server.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("STOCK_PLATFORM_TEST_DATABASE_URL") or start_pgserver(tmp_path_factory.mktemp("pgdata"))


def psycopg_dsn(url: str) -> str:
    return PostgresResource(url=url).sqlalchemy_url().set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Stack:
    """One test's slice of the local stack: its own bucket and schema on the shared servers."""

    endpoint: str
    database_url: str
    bucket: str
    schema: str
    table: str = "historical_stocks_data"

    @cached_property
    def s3(self):
        return boto3.client("s3", endpoint_url=self.endpoint)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(psycopg_dsn(self.database_url), autocommit=True)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.connect() as conn:
            return conn.execute(
                sql.format(t=f'"{self.schema}"."{self.table}"', s=f'"{self.schema}"'), params
            ).fetchall()

    def table_rows(self) -> list[tuple]:
        return self.query("SELECT * FROM {t} ORDER BY company_name, stock_date")

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def stack(moto_endpoint: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:10]
    result = Stack(moto_endpoint, database_url, bucket=f"source-{suffix}", schema=f"t_{suffix}")
    for name, value in {
        **FAKE_AWS_ENV,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "STOCK_PLATFORM_SOURCE_BUCKET": result.bucket,
        "STOCK_PLATFORM_DATABASE_URL": database_url,
        "STOCK_PLATFORM_DB_SCHEMA": result.schema,
    }.items():
        monkeypatch.setenv(name, value)
    result.s3.create_bucket(Bucket=result.bucket)
    with result.connect() as conn:
        conn.execute(f'CREATE SCHEMA "{result.schema}"')
    yield result
    with result.connect() as conn:
        conn.execute(f'DROP SCHEMA "{result.schema}" CASCADE')


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as test_instance:
        yield test_instance
