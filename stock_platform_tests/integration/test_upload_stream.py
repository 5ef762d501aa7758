"""The extract's streamed upload against moto's S3: what arrives is exactly what was streamed, in several parts,
and a stream that breaks half-way leaves the previous object and no unfinished upload behind."""

from collections.abc import Iterator

import pytest

from stock_platform.resources.s3 import SourceBucket

pytestmark = pytest.mark.integration
KEY = "Output/historical_stock_data.csv"
CHUNK = b"2017-11-01,10,11,9,10.5,100,5,0.5,aapl\n" * 1000  # ~40 KB, about what one COPY message batch holds


def chunks(total_bytes: int, fail_after: int | None = None) -> Iterator[bytes]:
    sent = 0
    while sent < total_bytes:
        if fail_after is not None and sent >= fail_after:
            raise RuntimeError("the database went away")
        yield CHUNK
        sent += len(CHUNK)


def test_a_stream_arrives_whole_with_its_metadata(stack) -> None:
    bucket = SourceBucket(bucket=stack.bucket)
    bucket.upload_stream(KEY, chunks(20 * 1024 * 1024), "text/csv", {"table-version": "7"})
    expected = b"".join(chunks(20 * 1024 * 1024))
    assert stack.get(KEY) == expected  # 20 MB: more than one 8 MB part
    head = stack.s3.head_object(Bucket=stack.bucket, Key=KEY)
    assert head["Metadata"] == {"table-version": "7"} and head["ContentType"] == "text/csv"
    assert "-" in head["ETag"]  # a multipart upload's ETag: the stream was sent in parts


def test_a_broken_stream_leaves_the_previous_object(stack) -> None:
    bucket = SourceBucket(bucket=stack.bucket)
    stack.s3.put_object(Bucket=stack.bucket, Key=KEY, Body=b"previous extract\n", Metadata={"table-version": "6"})
    with pytest.raises(RuntimeError, match="the database went away"):
        bucket.upload_stream(KEY, chunks(40 * 1024 * 1024, fail_after=20 * 1024 * 1024), "text/csv", {})
    assert stack.get(KEY) == b"previous extract\n"
    assert stack.s3.head_object(Bucket=stack.bucket, Key=KEY)["Metadata"] == {"table-version": "6"}
    assert stack.s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads", []) == []  # aborted, not left
