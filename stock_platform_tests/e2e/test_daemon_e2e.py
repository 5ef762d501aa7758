"""End to end with the real Dagster daemon: marker upload -> sensor -> run -> one SNS message read from SQS.

Everything is real and out of process: moto's HTTP server (S3, SNS, SQS), PostgreSQL, `dagster-daemon run`
with the workspace, its run launcher and queued run coordinator. Every wait is bounded; the daemon's
process group is killed at the end whatever happens.
"""

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from subprocess import Popen

import dagster as dg
import pytest

from stock_platform.local import sample
from stock_platform.local.stack import (
    NotificationSink,
    create_notification_sink,
    stop_process_group,
    write_local_instance,
)
from stock_platform_tests.processes import STOP_TIMEOUT_S, dagster_command, running
from stock_platform_tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.daemon]

# Bounds on waits for something that must happen; reached only if it never does (a hang), never on a slow machine.
HANG_S = 600
MARKER = "incoming/.SUCCESS"


@dataclass
class Daemon:
    sink: NotificationSink
    home: Path
    log: Path
    process: Popen

    def stop(self) -> None:
        stop_process_group(self.process, STOP_TIMEOUT_S)


@pytest.fixture
def daemon(stack, tmp_path: Path):
    home = tmp_path / "dagster_home"
    write_local_instance(home)
    sink = create_notification_sink(f"e2e-{stack.bucket}")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "STOCK_PLATFORM_SNS_TOPIC_ARN": sink.topic_arn,
        "STOCK_PLATFORM_NOTIFY_PREFIX": "E2E",
        "STOCK_PLATFORM_SENSOR_INTERVAL_SECONDS": "2",
    }
    log = tmp_path / "daemon.log"
    with running(dagster_command("dagster-daemon", "run"), env, log) as process:
        yield Daemon(sink, home, log, process)


def next_message(daemon: Daemon, what: str) -> dict:
    """The next notification delivered; a second one in the same batch fails the test (one message per run)."""
    [message] = wait_until(lambda: daemon.sink.receive(wait_seconds=1), timeout=HANG_S, what=what)
    return message


def upload_marker(stack, previous: datetime | None = None) -> datetime:
    """Upload the marker; a re-upload is new to the sensor only once S3 gives it a later LastModified.

    LastModified has one-second resolution and is part of the marker's run key: an upload within the second of
    the previous one is the same upload to the sensor (no run), so upload again until S3 records a new second.
    """

    def upload() -> datetime | None:
        stack.put(MARKER, b"")
        modified = stack.s3.head_object(Bucket=stack.bucket, Key=MARKER)["LastModified"]
        return modified if previous is None or modified > previous else None

    return wait_until(upload, timeout=HANG_S, what="an upload with a new LastModified", interval=0.2)


def test_markers_start_runs_and_each_run_sends_one_message(stack, daemon) -> None:
    batch = sample.generate(companies=12, listed=8, min_rows=100, max_rows=150)
    sample.upload(batch, stack.put)

    marker = upload_marker(stack)
    success = next_message(daemon, "the first run's notification")
    assert success["Subject"] == "E2E_Pipeline_Success", daemon.log.read_text()[-3000:]
    assert success["MessageAttributes"]["status"]["Value"] == "SUCCESS"
    assert f"marker s3://{stack.bucket}/{MARKER}" in success["Message"]
    loaded = stack.query("SELECT count(*) FROM {t}")[0][0]
    assert loaded > 0 and f"inserted {loaded}," in success["Message"]  # the first load inserts every row

    # Break the target: a changed file whose load PostgreSQL refuses.
    company = next(
        e.split(".")[0] for e in batch.listed if e.split(".")[0] not in ("badr", "empt", "hdro", "zzzz_missing")
    )
    name = next(n for n in batch.files if n.startswith(company + "."))
    stack.put(f"Stocks/{name}", batch.files[name] + b"2019-01-02,1,1,1,1,1,0\n")
    with stack.connect() as conn:
        conn.execute(f"""CREATE FUNCTION "{stack.schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'target is read-only for this test'; END $$""")
        conn.execute(
            f'CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON "{stack.schema}"."{stack.table}" '
            f'FOR EACH ROW EXECUTE FUNCTION "{stack.schema}".refuse()'
        )
    marker = upload_marker(stack, marker)
    failure = next_message(daemon, "the failed run's notification")
    assert failure["Subject"] == "E2E_Pipeline_Failure"
    assert "Failed step: load_stock_batch" in failure["Message"]
    assert "target is read-only for this test" in failure["Message"]
    assert stack.query("SELECT count(*) FROM {t}")[0][0] == loaded  # the failed run changed nothing

    with stack.connect() as conn:
        conn.execute(f'DROP TRIGGER refuse ON "{stack.schema}"."{stack.table}"')
    upload_marker(stack, marker)  # the same key again: a new upload, a new run
    recovered = next_message(daemon, "the recovered run's notification")
    assert recovered["Subject"] == "E2E_Pipeline_Success"
    assert stack.query("SELECT count(*) FROM {t}")[0][0] == loaded + 1

    # Nothing more was sent: once the daemon is stopped nothing can be, and the queue holds what was.
    daemon.stop()
    assert daemon.sink.receive(wait_seconds=0) == []
    with dg.DagsterInstance.from_config(str(daemon.home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3
        assert len({r.tags["dagster/run_key"] for r in runs}) == 3
        assert sorted(r.status.value for r in runs) == ["FAILURE", "SUCCESS", "SUCCESS"]
