"""The marker triggers: every upload of a `.SUCCESS` object starts exactly one run of the whole batch.

Two triggers build the same run requests (`marker_result`): `s3_marker_sensor` polls the monitored bucket, and
`s3_marker_queue_sensor` reads the bucket's S3 event notifications from an SQS queue (when
STOCK_PLATFORM_MARKER_QUEUE_URL is set, and then instead of the polling sensor; see `build_queue_sensor`).

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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import dagster as dg

from stock_platform.batch.partitions import COMPANY_PARTITIONS, company_partition_requests, partition_range_tags
from stock_platform.batch.sources import read_batch
from stock_platform.resources.s3 import Marker, MonitoredBucket, SourceBucket
from stock_platform.resources.sqs import MarkerQueue
from stock_platform.runtime import daemon_min_interval
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


def marker_result(
    context: dg.SensorEvaluationContext,
    monitored: MonitoredBucket,
    bucket: SourceBucket,
    uploads: Sequence[tuple[str, Marker]],
    cursor: str,
) -> dg.SensorResult:
    """One run request per marker upload (run key, marker), after bringing the company partitions in line with the
    list and the files present: what every marker trigger returns, whichever way it learnt of the uploads."""
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
            run_key=run_key,
            tags={**range_tags, MARKER_TAG: monitored.uri(marker.key), MARKER_ETAG_TAG: marker.etag},
        )
        for run_key, marker in uploads
    ]
    context.log.info(f"{len(uploads)} new marker(s): {[m.key for _, m in uploads]}; {len(keys)} companies per run")
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=cursor)


def build_marker_sensor(
    job: Any,  # define_asset_job's result; dagster does not export its type
    minimum_interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="s3_marker_sensor",
        job=job,
        minimum_interval_seconds=daemon_min_interval(minimum_interval_seconds),
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

        return marker_result(context, monitored, bucket, [(m.run_key, m) for m in new], cursor)

    return s3_marker_sensor


@dataclass(frozen=True)
class QueuePlan:
    uploads: list[tuple[str, Marker]]  # (run key, marker upload), in message order
    keep: list[str]  # receipt handles of messages that asked for runs: deleted once the runs are recorded
    drop: list[str]  # receipt handles of messages that ask for nothing (test events, other keys): deleted now
    ignored: list[str]  # why each dropped message asked for nothing


def _queued_upload(record: dict[str, Any], message_id: str, monitored: MonitoredBucket) -> tuple[str, Marker] | str:
    """(run key, marker) of an S3 event record announcing a marker upload, else why it announces none."""
    try:
        s3, name = record["s3"], record["s3"]["bucket"]["name"]
        obj, event = s3["object"], str(record["eventName"])
        key = unquote_plus(obj["key"])  # S3 URL-encodes keys in notifications
        if not (
            event.startswith("ObjectCreated:")
            and name == monitored.bucket
            and key.startswith(monitored.prefix)
            and key.endswith(monitored.marker_suffix)
        ):
            return f"{event} of s3://{name}/{key}"
        marker = Marker(key, obj["eTag"], datetime.fromisoformat(record["eventTime"]), obj.get("versionId"))
    except (KeyError, TypeError, ValueError) as error:
        return f"malformed record in message {message_id} ({type(error).__name__}: {error})"
    if marker.version_id:
        return marker.run_key, marker
    return f"{marker.run_key}~{obj.get('sequencer') or message_id}", marker


def plan_queue_messages(messages: Sequence[dict[str, Any]], monitored: MonitoredBucket) -> QueuePlan:
    """The marker uploads that S3 event notification messages announce. Pure.

    An upload's run key is the polling sensor's (key, time, ETag or version id), with, in an unversioned bucket,
    the event's sequencer (S3's per-key order of events; moto has none, so the SQS message id instead): three
    uploads of one key with one content within a second are three runs, and a message delivered twice is one.
    """
    plan = QueuePlan([], [], [], [])
    seen: set[str] = set()
    for message in messages:
        message_id, found = str(message.get("MessageId")), False
        try:
            body = json.loads(message["Body"])
            if isinstance(body, dict) and body.get("Type") == "Notification":  # S3 -> SNS -> SQS, not raw
                body = json.loads(body["Message"])
        except (json.JSONDecodeError, KeyError, TypeError):
            body = None
        if not isinstance(body, dict):
            plan.ignored.append(f"malformed message {message_id}: not an S3 event notification")
        elif body.get("Event") == "s3:TestEvent":
            plan.ignored.append(f"message {message_id}: s3:TestEvent")
        records = body.get("Records", []) if isinstance(body, dict) else []
        for record in records if isinstance(records, list) else []:
            upload = _queued_upload(record, message_id, monitored)
            if isinstance(upload, str):
                plan.ignored.append(upload)
                continue
            found = True
            if upload[0] not in seen:  # the same message received twice in one tick is one request
                seen.add(upload[0])
                plan.uploads.append(upload)
        (plan.keep if found else plan.drop).append(message["ReceiptHandle"])
    return plan


MESSAGES_PER_TICK = 100


def build_queue_sensor(
    job: Any, minimum_interval_seconds: int, default_status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    """The marker trigger fed by S3 event notifications through SQS: every upload is one message, and the queue
    itself is where the sensor stands, so nothing is listed and no re-upload collapses into another.

    A message is deleted only after its run request is recorded. Dagster records a SensorResult after the
    evaluation function returns, so a tick keeps the receipt handles of the messages it turned into run requests
    in its cursor and the next tick deletes them: the next tick sees that cursor only if the previous result was
    recorded. If it was not (the daemon stopped mid-tick), the messages become visible again after the visibility
    timeout and are turned into the same run keys, which Dagster launches at most once.
    """

    @dg.sensor(
        name="s3_marker_queue_sensor",
        job=job,
        minimum_interval_seconds=daemon_min_interval(minimum_interval_seconds),
        default_status=default_status,
        description=(
            "Starts one run of the whole batch for every .SUCCESS marker upload announced by the monitored "
            "bucket's S3 event notifications in the marker queue (SQS)."
        ),
    )
    def s3_marker_queue_sensor(
        context: dg.SensorEvaluationContext, monitored: MonitoredBucket, bucket: SourceBucket, marker_queue: MarkerQueue
    ) -> dg.SensorResult:
        recorded = json.loads(context.cursor)["received"] if context.cursor else []
        marker_queue.delete(recorded)  # this cursor was stored with the run requests of those messages
        plan = plan_queue_messages(marker_queue.receive(MESSAGES_PER_TICK), monitored)
        if plan.ignored:
            # Deleted below: nothing in them asks for a run. A malformed one is worth a look, hence the warning.
            log = context.log.warning if any(i.startswith("malformed") for i in plan.ignored) else context.log.info
            log(f"Ignored {len(plan.ignored)} event(s): {plan.ignored[:10]}")
        marker_queue.delete(plan.drop)
        cursor = json.dumps({"received": plan.keep}, separators=(",", ":"))
        if not plan.uploads:
            return dg.SensorResult(
                skip_reason=f"No marker upload in {marker_queue.queue_url} ({len(plan.ignored)} other event(s))",
                cursor=cursor,
            )
        return marker_result(context, monitored, bucket, plan.uploads, cursor)

    return s3_marker_queue_sensor
