"""End to end with the real Dagster daemon: a marker sensor whose ticks fail sends one watchdog notice, a daemon
restart sends nothing more, and the sensor's recovery sends one recovery notice.

The sensor is broken as a user would break it: the monitored bucket does not exist, so every tick of
`s3_marker_sensor` fails (NoSuchBucket); creating the bucket repairs it. The code location is this module's
`location`: the batch domain and the watchdog built by the platform's own functions, without the other domains.
"""

import os
import sys
from pathlib import Path

import boto3
import dagster as dg
import pytest

from stock_platform.batch.definitions import build_batch_defs
from stock_platform.local.stack import NotificationSink, create_notification_sink, write_local_instance
from stock_platform.settings import Settings
from stock_platform.watchdog.definitions import build_watchdog_defs
from stock_platform.watchdog.sensors import WATCHDOG_SENSOR
from stock_platform_tests.processes import running
from stock_platform_tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.daemon]

HANG_S = 600  # bounds waits for what must happen; reached only on a hang


@dg.definitions
def location() -> dg.Definitions:
    settings = Settings.from_environment()
    return dg.Definitions.merge(
        build_batch_defs(settings), build_watchdog_defs(settings), dg.Definitions(resources=settings.resources())
    )


def daemon_command() -> list[str]:
    return [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", __name__, "-a", "location"]


def watchdog_ticks(home: Path) -> int:
    """How many ticks of the watchdog have finished on the instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for state in instance.all_instigator_state():
            if state.instigator_name == WATCHDOG_SENSOR:
                ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
                return sum(1 for t in ticks if t.is_completed)
    return 0


def after_more_ticks(home: Path, count: int) -> None:
    """Wait until the watchdog has finished `count` more ticks than now."""
    start = watchdog_ticks(home)
    wait_until(lambda: watchdog_ticks(home) >= start + count, timeout=HANG_S, what=f"{count} more watchdog ticks")


def next_message(sink: NotificationSink, what: str, log: Path) -> dict:
    try:
        [message] = wait_until(lambda: sink.receive(wait_seconds=1), timeout=HANG_S, what=what)
    except TimeoutError as error:
        raise AssertionError(log.read_text()[-5000:]) from error
    return message


def test_a_failing_sensor_is_one_incident_across_a_restart_then_one_recovery(stack, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    write_local_instance(home)
    sink = create_notification_sink(f"watchdog-e2e-{stack.bucket}")
    monitored = f"missing-{stack.bucket}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "STOCK_PLATFORM_SNS_TOPIC_ARN": sink.topic_arn,
        "STOCK_PLATFORM_NOTIFY_PREFIX": "E2E",
        "STOCK_PLATFORM_SENSOR_INTERVAL_SECONDS": "2",
        "STOCK_PLATFORM_MONITORED_BUCKET": monitored,
    }
    log = tmp_path / "daemon.log"
    with running(daemon_command(), env, log):
        failure = next_message(sink, "the watchdog's failure notice", log)
        assert failure["Subject"] == "E2E_Pipeline_Failure"
        attributes = {k: v["Value"] for k, v in failure["MessageAttributes"].items()}
        assert attributes == {
            "status": "FAILURE",
            "job": WATCHDOG_SENSOR,
            "incident": "tick:s3_marker_sensor",
            "kind": "tick_error",
        }
        assert "Sensor s3_marker_sensor" in failure["Message"] and "NoSuchBucket" in failure["Message"]
        after_more_ticks(home, 2)
        assert sink.receive(wait_seconds=0) == []  # still failing: nothing more

    log = tmp_path / "daemon-restarted.log"
    with running(daemon_command(), env, log):
        after_more_ticks(home, 2)
        assert sink.receive(wait_seconds=0) == []  # the restarted daemon resumed from the stored incidents

        boto3.client("s3").create_bucket(Bucket=monitored)  # the repair
        recovery = next_message(sink, "the watchdog's recovery notice", log)
        assert recovery["Subject"] == "E2E_Pipeline_Recovered"
        assert recovery["MessageAttributes"]["status"]["Value"] == "RECOVERED"
        assert "the latest tick of sensor s3_marker_sensor" in recovery["Message"]
        after_more_ticks(home, 2)
    assert sink.receive(wait_seconds=0) == []
