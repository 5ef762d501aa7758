"""The S3 marker sensor's ticks: run keys, partition requests and cursor, against moto's HTTP server."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from stock_platform.batch.sensors import LATE_WINDOW, plan_marker_tick
from stock_platform.definitions import defs
from stock_platform.resources.s3 import Marker
from stock_platform_tests.waiting import wait_until

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)


def marker(key: str, seconds: float = 0, etag: str = "e1", version: str | None = None) -> Marker:
    return Marker(key, etag, T0 + timedelta(seconds=seconds), version)


class TestPlan:
    def test_first_tick_takes_every_marker(self) -> None:
        new, cursor = plan_marker_tick([marker("a.SUCCESS"), marker("b.SUCCESS", 1)], None)
        assert [m.key for m in new] == ["a.SUCCESS", "b.SUCCESS"]
        assert sorted(json.loads(cursor)["seen"]) == sorted(m.run_key for m in new)

    def test_a_stored_cursor_never_runs_a_marker_twice(self) -> None:
        markers = [marker("a.SUCCESS"), marker("b.SUCCESS", 1)]
        _, cursor = plan_marker_tick(markers, None)
        assert plan_marker_tick(markers, cursor)[0] == []

    def test_same_second_markers_are_all_new(self) -> None:
        _, cursor = plan_marker_tick([marker("a.SUCCESS")], None)
        new, _ = plan_marker_tick([marker("a.SUCCESS"), marker("b.SUCCESS"), marker("c.SUCCESS")], cursor)
        assert [m.key for m in new] == ["b.SUCCESS", "c.SUCCESS"]

    @pytest.mark.parametrize("again", [marker("a.SUCCESS", 1), marker("a.SUCCESS", 0, version="v2")])
    def test_re_upload_of_the_same_key_is_new(self, again: Marker) -> None:
        first = marker("a.SUCCESS", 0, version="v1" if again.version_id else None)
        _, cursor = plan_marker_tick([first], None)
        new, _ = plan_marker_tick([first, again] if again.version_id else [again], cursor)
        assert new == [again] and again.run_key != first.run_key

    def test_markers_behind_the_watermark_are_handled_and_forgotten(self) -> None:
        old, recent = marker("old.SUCCESS"), marker("new.SUCCESS", LATE_WINDOW.total_seconds() + 60)
        _, cursor = plan_marker_tick([old, recent], None)
        state = json.loads(cursor)
        assert state["seen"] == [recent.run_key]  # the cursor keeps only the late window
        assert plan_marker_tick([old, recent], cursor)[0] == []

    def test_deleted_markers_leave_the_cursor(self) -> None:
        _, cursor = plan_marker_tick([marker("a.SUCCESS"), marker("b.SUCCESS")], None)
        _, cursor = plan_marker_tick([marker("b.SUCCESS")], cursor)
        assert json.loads(cursor)["seen"] == [marker("b.SUCCESS").run_key]

    def test_run_keys_are_stable(self) -> None:
        assert marker("x/a.SUCCESS", 0.5).run_key == "x/a.SUCCESS@2026-11-23T12:00:00.500000Z#e1"


@pytest.fixture
def sensor_env(stack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STOCK_PLATFORM_MONITORED_BUCKET", stack.bucket)
    stack.put("CompanyNames/top_companies.txt", b"'aapl.us.csv', 'msft.us.csv'")
    for name in ("aapl.us.txt", "msft.us.txt", "ibm.us.txt"):
        stack.put(f"Stocks/{name}", b"Date,Open,High,Low,Close,Volume,OpenInt\n2017-11-10,1,1,1,1,1,0\n")
    return stack


def upload_in_a_new_second(stack, key: str) -> datetime:
    """Upload `key` so that its LastModified differs from the previous upload's (S3 has one-second resolution):
    re-upload until it does, instead of sleeping a fixed second."""

    def modified() -> datetime | None:
        objects = stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=key).get("Contents", [])
        return objects[0]["LastModified"] if objects else None

    before = modified()

    def put_and_check() -> datetime | None:
        stack.put(key, b"")
        after = modified()
        return after if after is not None and after != before else None

    return wait_until(put_and_check, timeout=30, what=f"a new LastModified for {key}", interval=0.2)


def tick(instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    definitions = defs()
    sensor = definitions.resolve_sensor_def("s3_marker_sensor")
    resources = {"monitored": definitions.resources["monitored"], "bucket": definitions.resources["bucket"]}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor(context)


@pytest.mark.integration
class TestSensorTicks:
    def test_no_marker_skips_with_a_reason(self, sensor_env, instance) -> None:
        result = tick(instance)
        assert not result.run_requests
        assert "No new marker" in result.skip_reason.skip_message and "0 seen" in result.skip_reason.skip_message

    def test_a_marker_starts_one_run_over_all_listed_companies(self, sensor_env, instance) -> None:
        sensor_env.put("batches/2026-11-23/.SUCCESS", b"")
        result = tick(instance)
        [request] = result.run_requests
        assert request.run_key.startswith("batches/2026-11-23/.SUCCESS@")
        assert request.tags["stock_platform/marker"] == f"s3://{sensor_env.bucket}/batches/2026-11-23/.SUCCESS"
        assert (
            request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"],
        ) == ("aapl", "msft")
        [partitions] = result.dynamic_partitions_requests
        assert list(partitions.partition_keys) == ["aapl", "msft"]  # ibm is not listed

        instance.add_dynamic_partitions("company", ["aapl", "msft"])
        again = tick(instance, result.cursor)  # a restart with the stored cursor
        assert not again.run_requests and not again.dynamic_partitions_requests

    def test_markers_in_the_same_second_each_start_a_run(self, sensor_env, instance) -> None:
        for i in range(3):
            sensor_env.put(f"m{i}.SUCCESS", b"")
        assert len({r.run_key for r in tick(instance).run_requests}) == 3

    def test_re_upload_of_an_old_key_starts_a_new_run(self, sensor_env, instance) -> None:
        sensor_env.put("a.SUCCESS", b"")
        first = tick(instance)
        upload_in_a_new_second(sensor_env, "a.SUCCESS")
        second = tick(instance, first.cursor)
        assert len(second.run_requests) == 1
        assert second.run_requests[0].run_key != first.run_requests[0].run_key

    def test_re_uploads_between_two_ticks_collapse_in_an_unversioned_bucket(self, sensor_env, instance) -> None:
        # What the README says: S3 keeps one object per key, so a polling sensor sees only the last of several
        # uploads of the same key made between two of its ticks. One run, for the last upload.
        first = tick(instance)
        for _ in range(3):
            upload_in_a_new_second(sensor_env, "a.SUCCESS")
        [request] = tick(instance, first.cursor).run_requests
        assert request.run_key.startswith("a.SUCCESS@")

    def test_re_uploads_between_two_ticks_each_start_a_run_in_a_versioned_bucket(self, sensor_env, instance) -> None:
        sensor_env.s3.put_bucket_versioning(Bucket=sensor_env.bucket, VersioningConfiguration={"Status": "Enabled"})
        first = tick(instance)
        for _ in range(3):
            sensor_env.put("a.SUCCESS", b"")  # every upload is a version of its own, even within one second
        assert len({r.run_key for r in tick(instance, first.cursor).run_requests}) == 3

    def test_re_upload_in_the_same_second_counts_in_a_versioned_bucket(self, sensor_env, instance) -> None:
        sensor_env.s3.put_bucket_versioning(Bucket=sensor_env.bucket, VersioningConfiguration={"Status": "Enabled"})
        sensor_env.put("a.SUCCESS", b"")
        sensor_env.put("a.SUCCESS", b"")
        assert len({r.run_key for r in tick(instance).run_requests}) == 2

    def test_more_than_1000_objects_are_paginated(self, sensor_env, instance) -> None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: sensor_env.put(f"data/{i:05d}.csv", b"x"), range(1100)))
        sensor_env.put("zz/last.SUCCESS", b"")  # sorts after the first 1,000 keys
        [request] = tick(instance).run_requests
        assert request.run_key.startswith("zz/last.SUCCESS@")

    def test_only_the_suffix_under_the_prefix_counts(self, sensor_env, instance, monkeypatch) -> None:
        monkeypatch.setenv("STOCK_PLATFORM_MONITORED_PREFIX", "incoming/")
        sensor_env.put("elsewhere/.SUCCESS", b"")
        sensor_env.put("incoming/batch.SUCCESS.bak", b"")
        assert not tick(instance).run_requests
        sensor_env.put("incoming/batch.SUCCESS", b"")
        assert len(tick(instance).run_requests) == 1
