"""The batch's frame PUTs (stock_platform/batch/frames.py): every company's frame once, in the groups the step
records as one batch each."""

import pytest

from stock_platform.batch.frames import FramePuts
from stock_platform.resources.s3 import SourceBucket

COMPANIES = [f"c{i:02d}" for i in range(40)]


def test_every_company_comes_once_in_the_groups(stack) -> None:
    bucket = SourceBucket(bucket=stack.bucket)
    with FramePuts(bucket, COMPANIES, lambda c: c.encode()) as puts:
        groups = list(puts.groups())
        assert puts.stored.result() is None
    assert all(groups) and sorted(c for g in groups for c in g) == COMPANIES
    assert stack.get(bucket.processed_key("c07")) == b"c07"


def test_what_is_stored_by_the_time_it_is_asked_for_is_one_group(stack) -> None:
    bucket = SourceBucket(bucket=stack.bucket)
    with FramePuts(bucket, COMPANIES, lambda c: c.encode()) as puts:
        puts.stored.result()  # a caller busy recording the previous group while every PUT completes
        assert [sorted(g) for g in puts.groups()] == [COMPANIES]


def test_a_failed_put_raises_from_the_groups_and_fails_stored(stack) -> None:
    missing = SourceBucket(bucket=f"{stack.bucket}-missing")  # every PUT fails: the bucket does not exist
    with FramePuts(missing, COMPANIES[:3], lambda c: c.encode()) as puts:
        with pytest.raises(RuntimeError, match=r"Could not write .*NoSuchBucket"):
            list(puts.groups())
        with pytest.raises(RuntimeError, match="NoSuchBucket"):
            puts.stored.result()
