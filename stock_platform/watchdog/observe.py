"""What the watchdog reads from the Dagster instance and the monitored bucket, turned into plain observations.

Only public instance methods: the sensors' stored states and ticks (`all_instigator_state`, `get_ticks`, the
storage Dagster's own UI reads) and run records filtered by status and tags.
"""

from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from stock_platform.resources.s3 import Marker, MonitoredBucket
from stock_platform.tags import MARKER_ETAG_TAG, MARKER_TAG
from stock_platform.watchdog.incidents import WAITING_STATUSES, Limits, MarkerUpload, SensorTick, WaitingRun

# A marker's run is a run tagged with its URI and ETag, created after the upload (a re-upload of the same content
# is a new upload and needs a run of its own). The creation time comes from the Dagster database's clock, the upload
# time from S3's: a run created up to this long "before" the upload still counts, for clocks apart by that much.
CLOCK_SLACK_S = 1.0
TICKS_READ = 3  # the latest finished tick is among the newest few (one may still be running)


def _innermost(error: Any) -> str:  # dagster's SerializableErrorInfo, not exported
    """The exception at the bottom of a SerializableErrorInfo chain: Dagster wraps a sensor's own exception in
    "Error occurred during the execution of evaluation_fn for sensor ..." and the reader wants the exception."""
    while error.cause is not None:
        error = error.cause
    return str(error.message).strip()


def sensor_ticks(
    instance: dg.DagsterInstance, sensor_names: Collection[str], location_name: str | None
) -> list[SensorTick]:
    """The latest finished tick of each named sensor that has ever ticked on this instance."""
    found: list[SensorTick] = []
    for state in instance.all_instigator_state():
        if state.instigator_type.value != "SENSOR" or state.instigator_name not in sensor_names:
            continue
        if location_name is not None and state.repository_selector.location_name != location_name:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=TICKS_READ)
        latest = next((t for t in ticks if t.is_completed), None)
        if latest is None:
            continue
        found.append(
            SensorTick(
                sensor=state.instigator_name,
                failed=latest.is_failure,
                timestamp=latest.timestamp,
                error=_innermost(latest.error) if latest.error is not None else None,
                running=state.is_running,
            )
        )
    return found


def _upload(marker: Marker) -> float:
    return marker.last_modified.astimezone(timezone.utc).timestamp()


def marker_uploads(
    instance: dg.DagsterInstance, monitored: MonitoredBucket, limits: Limits, now: float, watched: Collection[str]
) -> list[MarkerUpload]:
    """Every marker in the monitored bucket; whether it has a run is looked up for those old enough to matter
    and inside the window, and for those named by open incidents (`watched` run keys)."""
    if limits.marker_window_s <= 0 and not watched:
        return []  # the marker check is off: the bucket is not listed at all
    markers = monitored.markers()
    candidates = [
        m for m in markers if m.run_key in watched or limits.marker_age_s < now - _upload(m) <= limits.marker_window_s
    ]
    handled: set[str] = set()
    if candidates:
        oldest = min(_upload(m) for m in candidates) - CLOCK_SLACK_S
        uris = sorted({monitored.uri(m.key) for m in candidates})
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={MARKER_TAG: uris}, created_after=datetime.fromtimestamp(oldest, timezone.utc))
        )
        for marker in candidates:
            uri, uploaded = monitored.uri(marker.key), _upload(marker)
            if any(
                r.dagster_run.tags.get(MARKER_TAG) == uri
                and r.dagster_run.tags.get(MARKER_ETAG_TAG) == marker.etag
                and r.create_timestamp.timestamp() >= uploaded - CLOCK_SLACK_S
                for r in records
            ):
                handled.add(marker.run_key)
    looked_up = {m.run_key for m in candidates}
    return [
        MarkerUpload(
            uri=monitored.uri(m.key),
            run_key=m.run_key,
            uploaded=_upload(m),
            has_run=(m.run_key in handled) if m.run_key in looked_up else None,
        )
        for m in markers
    ]


def waiting_runs(instance: dg.DagsterInstance, watched_run_ids: Sequence[str]) -> list[WaitingRun]:
    """Runs that have not started yet, and the runs named by open incidents whatever their status now."""
    records = list(
        instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus(s) for s in WAITING_STATUSES]))
    )
    missing = sorted(set(watched_run_ids) - {r.dagster_run.run_id for r in records})
    if missing:
        records += instance.get_run_records(filters=dg.RunsFilter(run_ids=missing))
    return [
        WaitingRun(
            run_id=r.dagster_run.run_id,
            job_name=r.dagster_run.job_name,
            status=r.dagster_run.status.value,
            created=r.create_timestamp.timestamp(),
        )
        for r in records
    ]
