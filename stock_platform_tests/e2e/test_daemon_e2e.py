"""End to end with the real Dagster daemon: marker upload -> sensor -> run -> one SNS message read from SQS.

Everything is real and out of process: moto's HTTP server (S3, SNS, SQS), PostgreSQL, `dagster-daemon run`
with the workspace, its run launcher and queued run coordinator. Every wait is bounded; the daemon's
process group is killed at the end whatever happens.
"""

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from stock_platform.local import sample
from stock_platform.local.stack import create_notification_sink, write_local_instance
from stock_platform_tests.processes import dagster_command, running

pytestmark = [pytest.mark.integration, pytest.mark.daemon]

WAIT_S = 120


def wait_for_messages(sink, count: int, deadline_s: float = WAIT_S, settle_s: float = 8.0) -> list[dict]:
    """Wait until `count` messages arrived, then a little longer to catch any extra (duplicate) message."""
    received: list[dict] = []
    deadline = time.monotonic() + deadline_s
    while len(received) < count and time.monotonic() < deadline:
        received += sink.receive(wait_seconds=1)
    settle = time.monotonic() + settle_s
    while time.monotonic() < settle:
        received += sink.receive(wait_seconds=1)
    return received


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
    with running(dagster_command("dagster-daemon", "run"), env, tmp_path / "daemon.log"):
        yield sink, home, tmp_path / "daemon.log"


def test_markers_start_runs_and_each_run_sends_one_message(stack, daemon) -> None:
    sink, home, log = daemon
    batch = sample.generate(companies=12, listed=8, min_rows=100, max_rows=150)
    sample.upload(batch, stack.put)

    stack.put("incoming/.SUCCESS", b"")
    [success] = wait_for_messages(sink, 1)
    assert success["Subject"] == "E2E_Pipeline_Success", log.read_text()[-3000:]
    assert success["MessageAttributes"]["status"]["Value"] == "SUCCESS"
    assert f"marker s3://{stack.bucket}/incoming/.SUCCESS" in success["Message"]
    loaded = stack.query("SELECT count(*) FROM {t}")[0][0]
    assert loaded > 0 and f"loaded {loaded}" in success["Message"]

    # Break the target: a changed file whose load PostgreSQL refuses.
    company = next(e.split(".")[0] for e in batch.listed if e.split(".")[0] not in ("badr", "empt", "hdro", "zzzz_missing"))
    name = next(n for n in batch.files if n.startswith(company + "."))
    stack.put(f"Stocks/{name}", batch.files[name] + b"2019-01-02,1,1,1,1,1,0\n")
    with stack.connect() as conn:
        conn.execute(f"""CREATE FUNCTION "{stack.schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'target is read-only for this test'; END $$""")
        conn.execute(f'CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON "{stack.schema}"."{stack.table}" '
                     f'FOR EACH ROW EXECUTE FUNCTION "{stack.schema}".refuse()')
    time.sleep(1.1)  # a new LastModified second for the re-uploaded marker key
    stack.put("incoming/.SUCCESS", b"")
    [failure] = wait_for_messages(sink, 1)
    assert failure["Subject"] == "E2E_Pipeline_Failure"
    assert "Failed step: load_stock_batch" in failure["Message"]
    assert "target is read-only for this test" in failure["Message"]
    assert stack.query("SELECT count(*) FROM {t}")[0][0] == loaded  # the failed run changed nothing

    with stack.connect() as conn:
        conn.execute(f'DROP TRIGGER refuse ON "{stack.schema}"."{stack.table}"')
    time.sleep(1.1)
    stack.put("incoming/.SUCCESS", b"")  # the same key again: a new upload, a new run
    [recovered] = wait_for_messages(sink, 1)
    assert recovered["Subject"] == "E2E_Pipeline_Success"
    assert stack.query("SELECT count(*) FROM {t}")[0][0] == loaded + 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3
        assert len({r.tags["dagster/run_key"] for r in runs}) == 3
        assert sorted(r.status.value for r in runs) == ["FAILURE", "SUCCESS", "SUCCESS"]
