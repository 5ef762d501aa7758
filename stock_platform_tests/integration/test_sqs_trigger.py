"""The queue-fed marker trigger (`s3_marker_queue_sensor`) on moto's HTTP server: the monitored bucket's S3 event
notifications go to an SQS queue, the sensor turns each marker upload into one run request and deletes a message
only on the tick after the one whose result carried its run request."""

import json
import uuid

import boto3
import dagster as dg
import pytest

from stock_platform.batch.definitions import build_batch_defs
from stock_platform.batch.sensors import plan_queue_messages
from stock_platform.resources.s3 import MonitoredBucket
from stock_platform.resources.sqs import MarkerQueue
from stock_platform.settings import Settings
from stock_platform_tests.waiting import wait_until

pytestmark = pytest.mark.integration

QUEUE_SENSOR = "s3_marker_queue_sensor"


class Queue:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sqs = boto3.client("sqs")

    def counts(self) -> tuple[int, int]:
        """(visible, in flight) messages."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)["Attributes"]
        return int(attributes[names[0]]), int(attributes[names[1]])


def notify_queue(stack, suffix: str | None) -> Queue:
    """A queue receiving the bucket's s3:ObjectCreated:* notifications (keys ending in `suffix`, if given)."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"markers-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    configuration: dict = {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}
    if suffix:
        configuration["Filter"] = {"Key": {"FilterRules": [{"Name": "suffix", "Value": suffix}]}}
    stack.s3.put_bucket_notification_configuration(
        Bucket=stack.bucket, NotificationConfiguration={"QueueConfigurations": [configuration]}
    )
    return Queue(url)


@pytest.fixture
def queue_env(stack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STOCK_PLATFORM_MONITORED_BUCKET", stack.bucket)
    stack.put("CompanyNames/top_companies.txt", b"'aapl.us.csv', 'msft.us.csv'")
    for name in ("aapl.us.txt", "msft.us.txt"):
        stack.put(f"Stocks/{name}", b"Date,Open,High,Low,Close,Volume,OpenInt\n2017-11-10,1,1,1,1,1,0\n")
    queue = notify_queue(stack, suffix=".SUCCESS")  # written after the batch: only the markers are announced
    monkeypatch.setenv("STOCK_PLATFORM_MARKER_QUEUE_URL", queue.url)
    return stack, queue


def batch_defs() -> dg.Definitions:
    """The batch domain with the platform's resources, as the code location builds them."""
    settings = Settings.from_environment()
    return dg.Definitions.merge(build_batch_defs(settings), dg.Definitions(resources=settings.resources()))


def tick(instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    definitions = batch_defs()
    sensor = definitions.resolve_sensor_def(QUEUE_SENSOR)
    resources = {k: definitions.resources[k] for k in ("monitored", "bucket", "marker_queue")}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor(context)


def test_the_queue_replaces_the_polling_sensor(queue_env) -> None:
    names = {s.name for s in batch_defs().sensors or []}
    assert QUEUE_SENSOR in names and "s3_marker_sensor" not in names


def test_the_test_event_is_dropped_at_once(queue_env, instance) -> None:
    _, queue = queue_env
    assert queue.counts() == (1, 0)  # moto, like S3, announces the configuration with one s3:TestEvent
    result = tick(instance)
    assert not result.run_requests and "1 other event" in result.skip_reason.skip_message
    assert json.loads(result.cursor) == {"received": []}
    assert queue.counts() == (0, 0)


def test_three_uploads_of_one_key_are_three_runs_deleted_only_on_the_next_tick(queue_env, instance) -> None:
    stack, queue = queue_env
    for _ in range(3):
        stack.put("batches/a.SUCCESS", b"same content, same ETag")
    result = tick(instance)
    assert len({r.run_key for r in result.run_requests}) == 3
    for request in result.run_requests:
        assert request.run_key.startswith("batches/a.SUCCESS@")
        assert request.tags["stock_platform/marker"] == f"s3://{stack.bucket}/batches/a.SUCCESS"
        assert request.tags["stock_platform/marker_etag"] == stack.s3.head_object(
            Bucket=stack.bucket, Key="batches/a.SUCCESS"
        )["ETag"].strip('"')
        assert (
            request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"],
        ) == ("aapl", "msft")
    assert [list(p.partition_keys) for p in result.dynamic_partitions_requests] == [["aapl", "msft"]]
    assert len(json.loads(result.cursor)["received"]) == 3
    assert queue.counts() == (0, 3)  # received, not deleted: the result is not recorded yet

    after = tick(instance, result.cursor)  # the daemon stored the result: its messages can go
    assert not after.run_requests
    assert queue.counts() == (0, 0)


def test_a_tick_whose_result_is_lost_loses_no_upload(queue_env, instance, monkeypatch) -> None:
    stack, queue = queue_env
    monkeypatch.setenv("STOCK_PLATFORM_MARKER_QUEUE_VISIBILITY_SECONDS", "1")
    tick(instance)  # the test event
    stack.put("a.SUCCESS", b"")
    stack.put("b.SUCCESS", b"")
    lost = tick(instance)  # evaluated, then the daemon "crashed": neither its runs nor its cursor were recorded
    assert len(lost.run_requests) == 2

    # The next ticks start from the cursor stored before the crash; the messages come back after the visibility
    # timeout, as the same run keys (so a run that had been launched after all would not be launched twice).
    wanted, seen, cursor = {r.run_key for r in lost.run_requests}, set(), None

    def redelivered() -> bool:
        nonlocal cursor
        result = tick(instance, cursor)
        seen.update(r.run_key for r in result.run_requests)
        cursor = result.cursor
        return seen >= wanted

    wait_until(redelivered, timeout=60, what="the lost tick's messages to come back")
    assert seen == wanted
    tick(instance, cursor)
    assert queue.counts() == (0, 0)


def test_only_markers_under_the_prefix_start_runs_and_the_rest_is_dropped(stack, instance, monkeypatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_MONITORED_BUCKET", stack.bucket)
    monkeypatch.setenv("STOCK_PLATFORM_MONITORED_PREFIX", "incoming/")
    queue = notify_queue(stack, suffix=None)  # every upload is announced
    monkeypatch.setenv("STOCK_PLATFORM_MARKER_QUEUE_URL", queue.url)
    stack.put("incoming/data.csv", b"x")
    stack.put("elsewhere/.SUCCESS", b"")
    stack.put("incoming/day 1/.SUCCESS", b"")  # S3 URL-encodes the key in the notification
    result = tick(instance)
    [request] = result.run_requests
    assert request.tags["stock_platform/marker"] == f"s3://{stack.bucket}/incoming/day 1/.SUCCESS"
    assert queue.counts() == (0, 1)  # the test event and the two other uploads are deleted at once


MONITORED = MonitoredBucket(bucket="b", prefix="p/")


class TestPlan:
    @staticmethod
    def message(record: dict, message_id: str = "m1") -> dict:
        return {"MessageId": message_id, "ReceiptHandle": f"h-{message_id}", "Body": json.dumps({"Records": [record]})}

    @staticmethod
    def record(key: str = "p/x.SUCCESS", **object_fields: str) -> dict:
        return {
            "eventName": "ObjectCreated:Put",
            "eventTime": "2026-11-23T12:00:00.250Z",
            "s3": {"bucket": {"name": "b"}, "object": {"key": key, "eTag": "e1", **object_fields}},
        }

    def test_the_version_id_or_the_sequencer_tells_uploads_apart(self) -> None:
        versioned = plan_queue_messages([self.message(self.record(versionId="v1"))], MONITORED)
        assert versioned.uploads[0][0] == "p/x.SUCCESS@2026-11-23T12:00:00.250000Z#v1"
        sequenced = plan_queue_messages([self.message(self.record(sequencer="0A1B"))], MONITORED)
        assert sequenced.uploads[0][0] == "p/x.SUCCESS@2026-11-23T12:00:00.250000Z#e1~0A1B"
        plain = plan_queue_messages([self.message(self.record(), "m7")], MONITORED)
        assert plain.uploads[0][0].endswith("#e1~m7")  # moto sends no sequencer: the message id, stable on redelivery

    def test_identical_events_are_distinct_uploads_and_a_redelivery_is_one_request(self) -> None:
        same = [self.message(self.record(), f"m{i}") for i in range(3)]  # one key, time and ETag; three messages
        redelivered = {**same[0], "ReceiptHandle": "h-again"}  # the same message, received a second time
        plan = plan_queue_messages([*same, redelivered], MONITORED)
        assert len({run_key for run_key, _ in plan.uploads}) == len(plan.uploads) == 3
        assert plan.keep == ["h-m0", "h-m1", "h-m2", "h-again"]  # both receipts are deleted once recorded

    def test_an_event_relayed_by_sns_is_read_from_its_envelope(self) -> None:
        relayed = self.message(self.record())
        relayed["Body"] = json.dumps({"Type": "Notification", "Message": relayed["Body"]})
        plan = plan_queue_messages([relayed], MONITORED)
        assert [m.key for _, m in plan.uploads] == ["p/x.SUCCESS"] and plan.keep == ["h-m1"]

    def test_other_events_and_malformed_messages_ask_for_nothing(self) -> None:
        removed = {**self.record(), "eventName": "ObjectRemoved:Delete"}
        messages = [
            self.message(removed, "m1"),
            {"MessageId": "m2", "ReceiptHandle": "h-m2", "Body": "not json"},
            {"MessageId": "m3", "ReceiptHandle": "h-m3", "Body": json.dumps({"Event": "s3:TestEvent"})},
            self.message({**self.record(), "s3": {"bucket": {"name": "other"}, "object": {"key": "p/x.SUCCESS"}}}),
            self.message({k: v for k, v in self.record().items() if k != "eventTime"}, "m5"),
        ]
        plan = plan_queue_messages(messages, MONITORED)
        assert plan.uploads == [] and plan.keep == [] and len(plan.drop) == 5 and len(plan.ignored) == 5
        assert [i for i in plan.ignored if i.startswith("malformed")] == [
            "malformed message m2: not an S3 event notification",
            "malformed record in message m5 (KeyError: 'eventTime')",
        ]


def test_receive_gathers_more_than_one_call_returns(stack) -> None:
    """SQS returns at most 10 messages a call: `receive` asks again until it has `limit` or the queue is empty."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"many-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    for start in range(0, 25, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, min(start + 10, 25))]
        )
    queue = MarkerQueue(queue_url=url, visibility_timeout_seconds=60)
    first = queue.receive(limit=12)
    rest = queue.receive(limit=100)
    assert len(first) == 12 and len(rest) == 13  # hidden once received: the second call gets the others
    assert sorted(m["Body"] for m in first + rest) == sorted(f"m{i}" for i in range(25))
