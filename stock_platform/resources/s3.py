"""S3 resources shared by the domains: the source bucket and the bucket watched for markers.

Bound to environment variables in definitions.py and nowhere else.
"""

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any
from urllib.parse import quote

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from stock_platform.resources import aws

# What S3 answers, declared once for every reader and conditional writer of the platform.
MISSING_CODES = ("NoSuchKey", "404", "NotFound")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def is_missing(error: ClientError) -> bool:
    """There is no such object (a GET or HEAD; also an `IfMatch` PUT whose object was deleted meanwhile)."""
    return _code(error) in MISSING_CODES or _status(error) == 404


def precondition_failed(error: ClientError) -> bool:
    """A conditional write was refused: `IfNoneMatch='*'` found an object, or `IfMatch` a newer ETag (412)."""
    return _code(error) == "PreconditionFailed" or _status(error) == 412


def lost_race(error: ClientError) -> bool:
    """A conditional write lost to another writer: 412, or 409 ConditionalRequestConflict when the writes overlap
    (real S3 only; the tests inject it). Read the object again and retry."""
    return precondition_failed(error) or _code(error) == "ConditionalRequestConflict" or _status(error) == 409


def read_with_etag(client: Any, bucket: str, key: str) -> tuple[bytes | None, str | None]:
    """The object's bytes and ETag (what an `IfMatch` write is conditioned on), or (None, None) when missing."""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if is_missing(error):
            return None, None
        raise
    return response["Body"].read(), str(response["ETag"])


def _bounded_upload() -> TransferConfig:
    """Four 8 MB parts in flight and in memory at once (boto3's default holds up to ten): the extract upload set a
    run's peak memory (measured ~90 MB less, upload time unchanged against moto)."""
    config = TransferConfig(max_concurrency=4)
    config.max_in_memory_upload_chunks = 4  # not a constructor argument
    return config


_BOUNDED_UPLOAD = _bounded_upload()


class _ChunkReader(io.RawIOBase):
    """A read-only stream over an iterator of byte chunks (what boto3's upload_fileobj reads)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int
    last_modified: datetime | None = None

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


class S3Bucket(S3Resource):
    """One S3 bucket, with a client tuned for many small concurrent requests.

    Extends dagster-aws's S3Resource (credentials, region, endpoint; boto3 honours AWS_ENDPOINT_URL) with
    standard-mode retries (exponential backoff with jitter, throttling and connection errors included) and a
    connection pool as large as the thread pool.
    """

    bucket: str = Field(description="Bucket name.")
    max_concurrency: int = Field(default=16, description="Parallel S3 requests during a batch.")
    max_attempts: int = Field(default=5, description="boto3 standard-mode attempts per request, the first included.")
    browse_url: str | None = Field(
        default=None,
        description="Where the links the platform records point: unset, the AWS S3 console; a URL (the local stack "
        "sets its S3 endpoint), that URL path-style, `<url>/<bucket>/<key>`.",
    )

    _client: Any = PrivateAttr(default=None)

    def get_client(self) -> Any:
        # Every request asks for the client: the process's cache (which reads the environment) is consulted once.
        if self._client is None:
            self._client = aws.client(
                "s3",
                profile_name=self.profile_name,
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,  # None: boto3 honours AWS_ENDPOINT_URL itself
                use_ssl=self.use_ssl,
                verify=self.verify,
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                aws_session_token=self.aws_session_token,
                config={
                    "retries": {"mode": "standard", "total_max_attempts": self.max_attempts},
                    "max_pool_connections": self.max_concurrency + 4,
                },
            )
        return self._client

    def get_object_to_set_on_execution_context(self) -> "S3Bucket":
        # S3Resource hands ops a bare client; this resource's value is its domain methods.
        return self

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def link(self, key: str) -> str:
        """A URL that opens the object, or the listing of a prefix (a key ending in "/"), in a browser."""
        prefix = key.endswith("/")
        if self.browse_url:
            base = f"{self.browse_url.rstrip('/')}/{quote(self.bucket)}"
            return f"{base}?list-type=2&prefix={quote(key)}" if prefix else f"{base}/{quote(key)}"
        console = "https://s3.console.aws.amazon.com/s3"
        kind = "buckets" if prefix else "object"
        return f"{console}/{kind}/{quote(self.bucket)}?prefix={quote(key)}"

    def link_for_uri(self, uri: str) -> str:
        """`link` of an `s3://<this bucket>/<key>` URI."""
        head = f"s3://{self.bucket}/"
        if not uri.startswith(head):
            raise ValueError(f"{uri} is not in bucket {self.bucket}")
        return self.link(uri[len(head) :])

    def list_objects(self, prefix: str, delimiter: str | None = None) -> list[S3Object]:
        """Every object under `prefix`, following continuation tokens past 1,000 keys."""
        paginator = self.get_client().get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        objects: list[S3Object] = []
        for page in paginator.paginate(**kwargs):
            for item in page.get("Contents", []):
                objects.append(S3Object(item["Key"], item["ETag"].strip('"'), item["Size"], item.get("LastModified")))
        return objects

    def get_bytes(self, key: str) -> bytes:
        try:
            data: bytes = self.get_client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
            return data
        except ClientError as error:
            # Name the object: boto3's own message says only "The specified key does not exist."
            raise RuntimeError(f"Could not read {self.uri(key)}: {error}") from error

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        # A PUT is atomic in S3: readers see the old object or the new one, never part of either.
        try:
            response = self.get_client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except ClientError as error:
            raise RuntimeError(f"Could not write {self.uri(key)}: {error}") from error  # named, as in get_bytes
        return str(response["ETag"]).strip('"')

    def upload_fileobj(
        self, key: str, fileobj: IO[bytes], content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        # Multipart for large extracts; the object (with its metadata) appears only when the upload completes.
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": metadata or {}}
        self.get_client().upload_fileobj(fileobj, self.bucket, key, ExtraArgs=extra, Config=_BOUNDED_UPLOAD)

    def upload_stream(
        self, key: str, chunks: Iterable[bytes], content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        """Upload `chunks` as they come (a multipart upload with a few parts in memory), so producing the content
        and sending it overlap. The object appears only when the last part is in; a failure aborts the upload and
        leaves the previous object as it was."""
        self.upload_fileobj(key, io.BufferedReader(_ChunkReader(chunks), buffer_size=1 << 20), content_type, metadata)

    def head_metadata(self, key: str) -> dict[str, str] | None:
        """The object's user metadata (x-amz-meta-*), or None when there is no such object."""
        try:
            response = self.get_client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if is_missing(error):
                return None
            raise
        return dict(response.get("Metadata", {}))

    def exists(self, key: str) -> bool:
        return self.head_metadata(key) is not None

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; return how many were deleted.

        One DeleteObject per key rather than a batched DeleteObjects: a prefix here holds one company's frame, and
        per-key requests are authorised (and fail, when refused) per key, which a least-privilege policy scoped to
        a prefix relies on.
        """
        keys = [o.key for o in self.list_objects(prefix)]
        for key in keys:
            try:
                self.get_client().delete_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                raise RuntimeError(f"Could not delete {self.uri(key)}: {error}") from error
        return len(keys)


class SourceBucket(S3Bucket):
    """The S3 bucket a batch arrives in (Stocks/, CompanyNames/), and where the platform writes its extracts."""

    bucket: str = Field(description="Source bucket name (STOCK_PLATFORM_SOURCE_BUCKET).")
    stocks_prefix: str = Field(default="Stocks/", description="Prefix holding one CSV per company.")
    company_list_key: str = Field(
        default="CompanyNames/top_companies.txt", description="Key of the list of companies to load."
    )
    output_key: str = Field(default="Output/historical_stock_data.csv", description="Key of the combined CSV extract.")
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
        return bool(self.get_client().get_bucket_versioning(Bucket=self.bucket).get("Status") == "Enabled")

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
