"""The S3 marker sensor: every upload of a `.SUCCESS` object starts exactly one run of the whole batch.

Why not dagster-aws's `get_s3_keys(since_key=...)`: it compares keys, not uploads, so it misses a re-upload of an
old key and keys that sort before the last one (dagster-io/dagster issue 22892). Here an upload is identified by
key + LastModified + ETag (+ version id in a versioned bucket), which is also its run key, so Dagster itself
refuses to launch two runs for one upload even if the cursor were lost.

The cursor stays small: a watermark and the run keys of the markers uploaded within LATE_WINDOW of the newest
one. A marker older than the watermark is considered handled. LastModified is when S3 received the PUT, so an
object can only become visible late by the duration of its own upload, which for a marker is milliseconds;
LATE_WINDOW leaves minutes.
"""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from stock_platform.batch.partitions import COMPANY_PARTITIONS, company_partition_requests, partition_range_tags
from stock_platform.batch.sources import read_batch
from stock_platform.resources.s3 import Marker, MonitoredBucket, SourceBucket
from stock_platform.tags import MARKER_ETAG_TAG, MARKER_TAG

LATE_WINDOW = timedelta(minutes=10)


def plan_marker_tick(markers: Sequence[Marker], cursor: str | None) -> tuple[list[Marker], str]:
    """The marker uploads not yet handled (oldest first) and the cursor after handling them. Pure."""
    state = json.loads(cursor) if cursor else {}
    since = datetime.fromisoformat(state["since"]) if state.get("since") else None
    seen = set(state.get("seen", ()))
    new = [m for m in markers if m.run_key not in seen and (since is None or m.last_modified >= since)]
    if markers:
        newest = max(m.last_modified for m in markers)
        since = max(since, newest - LATE_WINDOW) if since else newest - LATE_WINDOW
    handled = seen | {m.run_key for m in new}
    # Forget run keys that fell behind the watermark (and markers that were deleted): the cursor stays small.
    keep = sorted(m.run_key for m in markers if m.run_key in handled and (since is None or m.last_modified >= since))
    return new, json.dumps({"since": since.isoformat() if since else None, "seen": keep}, separators=(",", ":"))


def partition_range_after(existing: Sequence[str], requests: Sequence[object]) -> list[str]:
    """The `company` partition keys, in Dagster's order, once `requests` are applied (adds append)."""
    keys = list(existing)
    for request in requests:
        if isinstance(request, dg.DeleteDynamicPartitionsRequest):
            gone = set(request.partition_keys)
            keys = [k for k in keys if k not in gone]
        elif isinstance(request, dg.AddDynamicPartitionsRequest):
            keys.extend(k for k in request.partition_keys if k not in keys)
    return keys


def build_marker_sensor(
    job: Any,  # define_asset_job's result; dagster does not export its type
    minimum_interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="s3_marker_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Starts one run of the whole batch for every upload of a .SUCCESS marker to the monitored bucket, "
            "after bringing the company partitions in line with the list and the files present."
        ),
    )
    def s3_marker_sensor(
        context: dg.SensorEvaluationContext, monitored: MonitoredBucket, bucket: SourceBucket
    ) -> dg.SensorResult:
        markers = monitored.markers()
        new, cursor = plan_marker_tick(markers, context.cursor)
        where = monitored.uri(monitored.prefix + "*" + monitored.marker_suffix)
        if not new:
            latest = f"; newest {markers[-1].key} at {markers[-1].last_modified:%Y-%m-%d %H:%M:%S}Z" if markers else ""
            return dg.SensorResult(skip_reason=f"No new marker at {where} ({len(markers)} seen{latest})", cursor=cursor)

        existing = context.instance.get_dynamic_partitions(COMPANY_PARTITIONS)
        try:
            partition_requests = company_partition_requests(read_batch(bucket).selection, existing)
        except Exception as error:  # noqa: BLE001 - the run must still start, fail, and notify
            # The run itself will fail on the same problem and say so in its failure notification.
            context.log.error(f"Could not read the batch in {bucket.uri('')}: {error}; launching the runs anyway")
            partition_requests = []
        keys = partition_range_after(existing, partition_requests)
        range_tags = partition_range_tags(keys)
        run_requests = [
            dg.RunRequest(
                run_key=marker.run_key,
                tags={**range_tags, MARKER_TAG: monitored.uri(marker.key), MARKER_ETAG_TAG: marker.etag},
            )
            for marker in new
        ]
        context.log.info(f"{len(new)} new marker(s): {[m.key for m in new]}; {len(keys)} companies per run")
        return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=cursor)

    return s3_marker_sensor
