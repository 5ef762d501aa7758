"""The watchdog sensor against moto (S3, SNS delivered to SQS) and a real Dagster instance: a marker left without
a run and a run stuck in the queue each send one failure notice, nothing more while they last, and one recovery
notice when they clear. (A failing sensor tick needs the daemon: stock_platform_tests/e2e/test_watchdog_e2e.py.)"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from stock_platform.batch.definitions import build_batch_defs
from stock_platform.local.stack import PROJECT_ROOT, NotificationSink, create_notification_sink, write_local_instance
from stock_platform.settings import Settings
from stock_platform.tags import MARKER_ETAG_TAG, MARKER_TAG
from stock_platform.watchdog.definitions import build_watchdog_defs
from stock_platform.watchdog.observe import CLOCK_SLACK_S
from stock_platform_tests.waiting import wait_until

pytestmark = pytest.mark.integration


@dg.op
def noop() -> None:
    pass


@dg.job
def stock_batch_job() -> None:  # stands in for the batch job: only its runs' tags and statuses matter here
    noop()


@pytest.fixture
def watched(stack, monkeypatch: pytest.MonkeyPatch) -> NotificationSink:
    sink = create_notification_sink(f"watchdog-{stack.bucket}")
    for name, value in {
        "STOCK_PLATFORM_SNS_TOPIC_ARN": sink.topic_arn,
        "STOCK_PLATFORM_NOTIFY_PREFIX": "WD",
        "STOCK_PLATFORM_MONITORED_BUCKET": stack.bucket,
        "STOCK_PLATFORM_WATCHDOG_MARKER_AGE_SECONDS": "0",
        # The runs the marker tests create stay NOT_STARTED: they are not what those tests watch.
        "STOCK_PLATFORM_WATCHDOG_RUN_START_SECONDS": "3600",
    }.items():
        monkeypatch.setenv(name, value)
    return sink


@pytest.fixture
def queued_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The local instance (a QueuedRunCoordinator), with no daemon to dequeue its runs."""
    home = tmp_path / "dagster_home"
    write_local_instance(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def launch(job_name: str) -> None:
    """`dagster job launch`: the run goes to the instance's run coordinator (DAGSTER_HOME), as from the UI."""
    command = [str(Path(sys.executable).parent / "dagster"), "job", "launch", "-m", __name__, "-a", job_name]
    done = subprocess.run(
        command, check=False, cwd=PROJECT_ROOT, env=dict(os.environ), capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]


def platform() -> dg.Definitions:
    """The batch and the watchdog as the code location builds them (the other domains play no part here)."""
    settings = Settings.from_environment()
    return dg.Definitions.merge(
        build_batch_defs(settings), build_watchdog_defs(settings), dg.Definitions(resources=settings.resources())
    )


class Watchdog:
    """Ticks of the watchdog sensor, each starting from the cursor the previous one returned (as the daemon
    stores it; a restarted daemon reads the same cursor)."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance, self.cursor = instance, None

    def tick(self) -> dg.SensorResult:
        definitions = platform()
        sensor = definitions.resolve_sensor_def("watchdog_sensor")
        resources = {k: definitions.resources[k] for k in ("sns", "monitored")}
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=resources, definitions=definitions
        ) as context:
            result = sensor(context)
        self.cursor = result.cursor
        return result


def messages(sink: NotificationSink) -> list[dict]:
    """Every message delivered so far (SNS to SQS is synchronous in moto)."""
    found, batch = [], sink.receive(wait_seconds=0)
    while batch:
        found += batch
        batch = sink.receive(wait_seconds=0)
    return found


def create_run(instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> dg.DagsterRun:
    return instance.create_run_for_job(stock_batch_job, tags=tags or {})


def test_a_marker_without_a_run_is_one_incident_until_its_run_starts(stack, watched, instance) -> None:
    stack.put("batches/.SUCCESS", b"")
    watchdog = Watchdog(instance)
    watchdog.tick()
    [failure] = messages(watched)
    assert failure["Subject"] == "WD_Pipeline_Failure"
    assert failure["MessageAttributes"]["status"]["Value"] == "FAILURE"
    assert failure["MessageAttributes"]["kind"]["Value"] == "marker_without_run"
    assert f"Marker s3://{stack.bucket}/batches/.SUCCESS" in failure["Message"]

    watchdog.tick()
    watchdog.tick()
    assert messages(watched) == []  # still open: nothing more

    etag = stack.s3.head_object(Bucket=stack.bucket, Key="batches/.SUCCESS")["ETag"].strip('"')
    create_run(instance, {MARKER_TAG: f"s3://{stack.bucket}/batches/.SUCCESS", MARKER_ETAG_TAG: etag})
    watchdog.tick()
    [recovery] = messages(watched)
    assert recovery["Subject"] == "WD_Pipeline_Recovered"
    assert "a run was started for the marker" in recovery["Message"]
    watchdog.tick()
    assert messages(watched) == []


def test_a_re_upload_after_a_run_is_a_new_incident(stack, watched, instance) -> None:
    stack.put("a.SUCCESS", b"")
    etag = stack.s3.head_object(Bucket=stack.bucket, Key="a.SUCCESS")["ETag"].strip('"')
    run = create_run(instance, {MARKER_TAG: f"s3://{stack.bucket}/a.SUCCESS", MARKER_ETAG_TAG: etag})
    watchdog = Watchdog(instance)
    watchdog.tick()
    assert messages(watched) == []  # this upload has its run

    # The same content again (same ETag): only the upload time tells it apart from the one that has a run.
    created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()

    def upload_after_the_run() -> bool:
        stack.put("a.SUCCESS", b"")
        modified = stack.s3.head_object(Bucket=stack.bucket, Key="a.SUCCESS")["LastModified"]
        return modified.timestamp() > created + CLOCK_SLACK_S

    wait_until(upload_after_the_run, timeout=30, what="an upload S3 dates after the run", interval=0.2)
    watchdog.tick()
    [failure] = messages(watched)
    assert "a.SUCCESS" in failure["Message"] and failure["Subject"] == "WD_Pipeline_Failure"


def test_a_run_stuck_in_the_queue_is_one_incident_until_it_leaves_it(watched, queued_instance, monkeypatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_WATCHDOG_RUN_START_SECONDS", "0")
    launch("stock_batch_job")
    [run] = queued_instance.get_runs()
    assert run.status == dg.DagsterRunStatus.QUEUED
    watchdog = Watchdog(queued_instance)

    def failure_sent() -> list[dict]:
        watchdog.tick()
        return messages(watched)

    [failure] = wait_until(failure_sent, timeout=30, what="the stuck run's notice")
    assert failure["Subject"] == "WD_Pipeline_Failure"
    assert f"Run {run.run_id} of stock_batch_job is still QUEUED" in failure["Message"]

    # A restarted daemon evaluates from the stored cursor: nothing is sent again.
    restarted = Watchdog(queued_instance)
    restarted.cursor = watchdog.cursor
    restarted.tick()
    assert messages(watched) == []

    queued_instance.run_coordinator.cancel_run(run.run_id)
    restarted.tick()
    [recovery] = messages(watched)
    assert recovery["Subject"] == "WD_Pipeline_Recovered" and "the run is now CANCELED" in recovery["Message"]
