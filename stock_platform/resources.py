"""Typed resources: the source bucket (S3) and the target database (PostgreSQL / Amazon RDS).

Each is bound to environment variables in definitions.py and nowhere else.
"""


import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

import boto3
import dagster as dg
import psycopg
from botocore.config import Config
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr
from sqlalchemy import NullPool, create_engine
from sqlalchemy.engine import URL, make_url

from stock_platform.schema import validate_identifier
from stock_platform.selection import Selection, parse_company_list, resolve_selection


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int
    last_modified: datetime | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Batch:
    """What the bucket holds right now: the parsed list, the stock files, and the resolved selection."""

    entries: tuple[str, ...]
    files: dict[str, S3Object]  # file name -> object, for the direct children of the stocks prefix
    selection: Selection

    def source_of(self, company: str) -> S3Object | None:
        name = self.selection.files.get(company)
        return self.files.get(name) if name else None


class S3Bucket(S3Resource):
    """One S3 bucket, with a client tuned for many small concurrent requests.

    Extends dagster-aws's S3Resource (credentials, region, endpoint; boto3 honours AWS_ENDPOINT_URL) with
    standard-mode retries (exponential backoff with jitter, throttling and connection errors included) and a
    connection pool as large as the thread pool.
    """

    bucket: str = Field(description="Bucket name.")
    max_concurrency: int = Field(default=16, description="Parallel S3 requests during a batch.")
    max_attempts: int = Field(default=5, description="boto3 standard-mode attempts per request, the first included.")

    _client: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def get_client(self) -> Any:
        # One client per resource instance: boto3 clients are thread-safe, and building one costs ~50 ms.
        with self._lock:
            if self._client is None:
                session = boto3.session.Session(profile_name=self.profile_name)
                self._client = session.client(
                    "s3",
                    region_name=self.region_name,
                    endpoint_url=self.endpoint_url,  # None: boto3 honours AWS_ENDPOINT_URL itself
                    use_ssl=self.use_ssl,
                    verify=self.verify,
                    aws_access_key_id=self.aws_access_key_id,
                    aws_secret_access_key=self.aws_secret_access_key,
                    aws_session_token=self.aws_session_token,
                    config=Config(
                        retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                        max_pool_connections=self.max_concurrency + 4,
                    ),
                )
            return self._client

    def get_object_to_set_on_execution_context(self) -> "S3Bucket":
        # S3Resource hands ops a bare client; this resource's value is its domain methods.
        return self

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def list_objects(self, prefix: str, delimiter: str | None = None) -> list[S3Object]:
        """Every object under `prefix`, following continuation tokens past 1,000 keys."""
        paginator = self.get_client().get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        objects: list[S3Object] = []
        for page in paginator.paginate(**kwargs):
            for item in page.get("Contents", []):
                objects.append(
                    S3Object(item["Key"], item["ETag"].strip('"'), item["Size"], item.get("LastModified"))
                )
        return objects

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.get_client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            # Name the object: boto3's own message says only "The specified key does not exist."
            raise RuntimeError(f"Could not read {self.uri(key)}: {error}") from error

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        # A PUT is atomic in S3: readers see the old object or the new one, never part of either.
        response = self.get_client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return response["ETag"].strip('"')

    def upload_fileobj(self, key: str, fileobj: IO[bytes], content_type: str) -> None:
        # Multipart for large extracts; the object appears only when the upload completes.
        self.get_client().upload_fileobj(fileobj, self.bucket, key, ExtraArgs={"ContentType": content_type})

    def exists(self, key: str) -> bool:
        try:
            self.get_client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True


class SourceBucket(S3Bucket):
    """The S3 bucket a batch arrives in (Stocks/, CompanyNames/), and where the platform writes its extracts."""

    bucket: str = Field(description="Source bucket name (STOCK_PLATFORM_SOURCE_BUCKET).")
    stocks_prefix: str = Field(default="Stocks/", description="Prefix holding one CSV per company.")
    company_list_key: str = Field(
        default="CompanyNames/top_companies.txt", description="Key of the list of companies to load."
    )
    output_key: str = Field(
        default="Output/historical_stock_data.csv", description="Key of the combined CSV extract."
    )
    processed_prefix: str = Field(
        default="Processed/", description="Prefix of the per-company Parquet frames (company=<c>/...)."
    )
    rejected_prefix: str = Field(
        default="Rejected/", description="Prefix of rejected rows, written as <prefix><run id>/<company>.csv."
    )

    def stock_files(self) -> dict[str, S3Object]:
        """The direct children of the stocks prefix, by file name (sub-folders are not part of a batch)."""
        return {
            obj.name: obj
            for obj in self.list_objects(self.stocks_prefix, delimiter="/")
            if obj.name and obj.key == self.stocks_prefix + obj.name
        }

    def current_batch(self) -> Batch:
        """Read the company list and list the stock files: the one source of truth for what a batch is."""
        entries = tuple(parse_company_list(self.get_bytes(self.company_list_key).decode("utf-8-sig", "replace")))
        files = self.stock_files()
        return Batch(entries, files, resolve_selection(entries, files))

    def processed_key(self, company: str) -> str:
        return f"{self.processed_prefix}company={company}/prices.parquet"

    def rejects_prefix(self, run_id: str) -> str:
        return f"{self.rejected_prefix}{run_id}/"

    def rejected_key(self, run_id: str, company: str) -> str:
        return f"{self.rejects_prefix(run_id)}{company}.csv"


@dataclass(frozen=True)
class Marker:
    """One upload of a `.SUCCESS` marker. Re-uploading the same key is a new upload: a new LastModified (and,
    in a versioned bucket, a new version id, which also tells apart two uploads within the same second)."""

    key: str
    etag: str
    last_modified: datetime
    version_id: str | None = None

    @property
    def run_key(self) -> str:
        """Stable across ticks and daemon restarts: Dagster never launches two runs for one run key."""
        stamp = self.last_modified.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{self.key}@{stamp}#{self.version_id or self.etag}"


class MonitoredBucket(S3Bucket):
    """The bucket watched for `.SUCCESS` markers: each new marker upload starts one batch run."""

    bucket: str = Field(description="Monitored bucket (STOCK_PLATFORM_MONITORED_BUCKET).")
    prefix: str = Field(default="", description="Only markers under this prefix count.")
    marker_suffix: str = Field(default=".SUCCESS", description="A key ending with this is a marker.")

    def versioned(self) -> bool:
        return self.get_client().get_bucket_versioning(Bucket=self.bucket).get("Status") == "Enabled"

    def markers(self) -> list[Marker]:
        """Every marker upload still visible, oldest first, listing past 1,000 keys.

        In a versioned bucket every version counts, so two uploads of one key in the same second are two
        markers; otherwise an upload is told apart by key, ETag and LastModified.
        """
        client = self.get_client()
        found: list[Marker] = []
        if self.versioned():
            for page in client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Versions", []):
                    if item["Key"].endswith(self.marker_suffix):
                        found.append(
                            Marker(item["Key"], item["ETag"].strip('"'), item["LastModified"], item.get("VersionId"))
                        )
        else:
            for obj in self.list_objects(self.prefix):
                if obj.key.endswith(self.marker_suffix) and obj.last_modified is not None:
                    found.append(Marker(obj.key, obj.etag, obj.last_modified))
        return sorted(found, key=lambda m: (m.last_modified, m.key, m.version_id or ""))


class SNSResource(dg.ConfigurableResource):
    """An Amazon SNS topic the platform publishes run notifications to (e-mail subscribers, SQS, ...).

    Shaped like dagster-aws's S3Resource: typed fields, one `get_client()`, one domain method.
    """

    topic_arn: str = Field(description="Topic to publish to (STOCK_PLATFORM_SNS_TOPIC_ARN).")
    region_name: str | None = Field(default=None, description="AWS region; default: boto3's (AWS_REGION).")
    endpoint_url: str | None = Field(default=None, description="SNS endpoint; default: boto3's (AWS_ENDPOINT_URL).")
    max_attempts: int = Field(
        default=6, description="boto3 standard-mode attempts per publish, the first included (exponential backoff with jitter)."
    )
    connect_timeout: float = Field(default=5.0, description="Seconds to wait for a connection to SNS.")
    subject_prefix: str = Field(
        default="StockPlatform", description="Subjects read <prefix>_Pipeline_Success / _Failure."
    )
    ui_base_url: str | None = Field(
        default="http://localhost:3000", description="Dagster UI base URL for the run link in each message."
    )

    def get_client(self) -> Any:
        return boto3.session.Session().client(
            "sns",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                connect_timeout=self.connect_timeout,
                read_timeout=10,
            ),
        )

    def publish(self, subject: str, message: str, attributes: dict[str, str]) -> str:
        """Publish one message; return its SNS message id. Raises after the retries are spent."""
        response = self.get_client().publish(
            TopicArn=self.topic_arn,
            Subject=subject,
            Message=message,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )
        return response["MessageId"]


class QualityPolicy(dg.ConfigurableResource):
    """Thresholds the data-quality checks enforce."""

    max_rejected_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Largest share of a run's rows that may be rejected before the run fails without loading "
        "(STOCK_PLATFORM_MAX_REJECTED_SHARE).",
    )
    max_file_bytes: int = Field(
        default=64 * 1024 * 1024,
        description="Files larger than this are rejected whole without being downloaded (a daily file is < 1 MB).",
    )


class PostgresResource(dg.ConfigurableResource):
    """The PostgreSQL database that holds the table (Amazon RDS in production).

    Takes a SQLAlchemy URL; connections are psycopg 3, opened per use and always closed, because a batch
    needs one connection for one transaction and a pool would only hold sockets open between runs.
    """

    url: str = Field(
        description=(
            "SQLAlchemy URL of the target database (STOCK_PLATFORM_DATABASE_URL), e.g. "
            "postgresql+psycopg://user:pass@host:5432/db?sslmode=require"
        )
    )
    schema_name: str = Field(default="public", description="Schema holding the table.")
    table: str = Field(default="historical_stocks_data", description="Table name.")
    connect_timeout: int = Field(default=10, description="Seconds to wait for a connection.")

    def sqlalchemy_url(self) -> URL:
        url = make_url(self.url)
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise ValueError(f"STOCK_PLATFORM_DATABASE_URL must be a PostgreSQL URL, not {url.get_backend_name()!r}")
        return url.set(drivername="postgresql+psycopg")

    def safe_url(self) -> str:
        """The URL with its password masked: the only form that goes into logs, metadata and messages."""
        return self.sqlalchemy_url().render_as_string(hide_password=True)

    def engine(self):  # noqa: ANN201 - sqlalchemy.Engine; for pandas.read_sql and ad-hoc queries
        return create_engine(
            self.sqlalchemy_url(), poolclass=NullPool, connect_args={"connect_timeout": self.connect_timeout}
        )

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A psycopg connection (for COPY), closed on exit. Nothing is committed unless the caller commits."""
        engine = self.engine()
        raw = engine.raw_connection()
        try:
            conn = raw.driver_connection
            assert isinstance(conn, psycopg.Connection)
            yield conn
        finally:
            raw.close()
            engine.dispose()

    @property
    def target(self) -> tuple[str, str]:
        return validate_identifier(self.schema_name, "schema"), validate_identifier(self.table, "table")
