"""Faults injected into real parts, and what the user sees: the run's outcome, the table, the notification."""

import io
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pyarrow.parquet as pq
import pytest

from stock_platform.batch import assets
from stock_platform.batch.summary import CompanyStatus
from stock_platform.local.report import execute_batch
from stock_platform.local.stack import create_notification_sink, write_local_instance
from stock_platform.notifications.sensors import NOTIFICATION_TAG, build_notification_sensors, notify
from stock_platform.resources.sns import SNSResource
from stock_platform_tests.faults import (
    FlakyProxy,
    backend_exists,
    blocked_by,
    holding_row,
    holding_table_lock,
    waiting_for_table_lock,
)
from stock_platform_tests.waiting import wait_until

pytestmark = pytest.mark.integration
HEADER = b"Date,Open,High,Low,Close,Volume,OpenInt\n"
# Bounds on waits for something that must happen; reached only if it never does (a hang), never on a slow machine.
HANG_S = 300


def rows(n: int, start_day: int = 1) -> bytes:
    return b"".join(f"2017-11-{d:02d},10,11,9,10.5,{100 + d},0\n".encode() for d in range(start_day, start_day + n))


def put_companies(stack, companies: dict[str, bytes]) -> None:
    stack.put("CompanyNames/top_companies.txt", ", ".join(companies).encode())
    for company, body in companies.items():
        stack.put(f"Stocks/{company}.us.txt", HEADER + body)


@pytest.fixture
def baseline(stack, instance):
    """Two companies loaded; the tests then add a third whose load they break."""
    put_companies(stack, {"aapl": rows(5), "msft": rows(5)})
    assert execute_batch(instance=instance).success
    return stack.table_rows()


def test_postgres_connection_killed_during_copy(stack, instance, baseline) -> None:
    sink = create_notification_sink(f"faults-{stack.bucket}")
    put_companies(stack, {"aapl": rows(5), "msft": rows(5), "nvda": rows(3)})
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(result=execute_batch(instance=instance)))
    # The load's COPY stops at nvda's first row: it must wait for our uncommitted row with the same key.
    with holding_row(stack, "nvda", "2017-11-01") as holder:
        worker.start()
        [(pid, query)] = wait_until(lambda: blocked_by(stack, holder), timeout=HANG_S, what="the COPY to reach nvda")
        assert query.lstrip().upper().startswith("COPY"), query
        with stack.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        worker.join(HANG_S)
    assert not worker.is_alive()
    failed = outcome["result"]
    assert not failed.success and "terminat" in failed.error.lower()
    assert stack.table_rows() == baseline

    with dg.build_resources({"sns": SNSResource(topic_arn=sink.topic_arn)}) as resources:
        notify(instance, instance.get_run_by_id(failed.run_id), resources.sns, _log())
    [message] = sink.receive(wait_seconds=2)
    assert (
        message["Subject"] == "StockPlatform_Pipeline_Failure" and "Failed step: load_stock_batch" in message["Message"]
    )

    recovered = execute_batch(instance=instance)
    assert recovered.success and recovered.summary.names(CompanyStatus.LOADED) == ["nvda"]
    assert stack.query("SELECT company_name, count(*) FROM {t} GROUP BY 1 ORDER BY 1") == [
        ("aapl", 5),
        ("msft", 5),
        ("nvda", 3),
    ]


def _log():
    return logging.getLogger("test")


def test_transient_s3_faults_are_retried(stack, instance, monkeypatch) -> None:
    put_companies(stack, {f"c{i:02d}": rows(4) for i in range(12)})
    # Every 4th request fails with 503 SlowDown or 500, and every 7th is slow: boto3's standard retries carry on.
    fault = lambda method, path, n: (503 if n % 8 == 0 else 500) if n % 4 == 0 else (0.5 if n % 7 == 0 else None)  # noqa: E731
    with FlakyProxy(stack.endpoint, fault) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        outcome = execute_batch(instance=instance)
    assert outcome.success, outcome.error
    assert proxy.injected >= 5
    assert stack.query("SELECT count(*) FROM {t}") == [(48,)]


def run_failing(stack, instance, monkeypatch, method: str, path_part: str, attempts: int):
    """A batch run whose S3 `method` requests on a path containing `path_part` always get a 500: its outcome and
    how many answers were injected."""
    fault = lambda m, path, n: 500 if m == method and path_part in path else None  # noqa: E731
    with FlakyProxy(stack.endpoint, fault) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("STOCK_PLATFORM_S3_MAX_ATTEMPTS", str(attempts))
        outcome = execute_batch(instance=instance)
    return outcome, proxy.injected


def test_a_permanent_s3_failure_names_the_object(stack, instance, monkeypatch) -> None:
    put_companies(stack, {"aapl": rows(4), "broken": rows(4)})
    outcome, injected = run_failing(stack, instance, monkeypatch, "GET", "broken.us.txt", attempts=3)
    assert not outcome.success
    assert f"s3://{stack.bucket}/Stocks/broken.us.txt" in outcome.error
    assert injected == 3  # the attempts configured, then a clean failure
    assert stack.query("SELECT count(*) FROM {t}") == [(0,)]


def test_a_frame_that_cannot_be_stored_fails_the_run_before_the_load_commits(stack, instance, baseline, monkeypatch):
    """Frames are recorded as their PUTs complete: a failed PUT leaves a materialization for exactly the frames
    that were stored, none for the one that was not, and the table as it was."""
    companies = {"aapl": rows(5), "msft": rows(5), **{f"c{i:02d}": rows(3) for i in range(12)}, "broken": rows(4)}
    put_companies(stack, companies)
    before_frames = len(instance.fetch_materializations(dg.AssetKey("company_stock_prices"), limit=1000).records)
    outcome, injected = run_failing(stack, instance, monkeypatch, "PUT", "broken/prices.parquet", attempts=2)
    assert not outcome.success
    assert injected == 2
    assert "Processed/company=broken/prices.parquet" in outcome.error
    assert outcome.summary is not None and outcome.summary.commit is None
    assert stack.table_rows() == baseline  # the load rolled back
    records = instance.fetch_materializations(dg.AssetKey("company_stock_prices"), limit=1000).records
    recorded = {r.partition_key for r in records[: len(records) - before_frames]}
    stored = {key.split("company=")[1].split("/")[0] for key in stack.keys("Processed/")}
    assert "broken" not in recorded and "broken" not in stored
    assert recorded <= stored  # never a materialization for a frame that is not stored


def test_a_step_failing_before_the_commit_rolls_the_load_back_though_every_frame_is_stored(
    stack, instance, baseline, monkeypatch
):
    """The load commits as soon as every frame is stored, while the step is still recording them: a step that
    fails before the commit (here, recording a frame) must still leave the table as it was.

    Deterministic: one frame's PUT is held at the proxy until the step has signalled its failure to the load, so
    every frame is stored by the time the load could commit."""
    put_companies(stack, {"aapl": rows(5), "msft": rows(5), "nvda": rows(3), "held": rows(4)})
    step_failed = threading.Event()

    class Signalled(threading.Event):  # the step's "failed" signal, made visible to the held PUT
        def set(self) -> None:
            super().set()
            step_failed.set()

    def broken_metadata(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("recording a frame failed")

    monkeypatch.setattr(assets, "threading", SimpleNamespace(Event=Signalled))
    monkeypatch.setattr(assets, "frame_metadata", broken_metadata)
    hold = lambda m, path, n: step_failed.wait(HANG_S) and None if m == "PUT" and "held/prices" in path else None  # noqa: E731
    with FlakyProxy(stack.endpoint, hold) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        outcome = execute_batch(instance=instance)
    assert not outcome.success and "recording a frame failed" in outcome.error
    assert step_failed.is_set()
    stored = {key.split("company=")[1].split("/")[0] for key in stack.keys("Processed/")}
    assert stored == {"aapl", "msft", "nvda", "held"}  # every frame stored ...
    assert outcome.summary is not None and outcome.summary.commit is None
    assert stack.table_rows() == baseline  # ... and the load rolled back all the same


LOAD = """
import sys
from stock_platform.local.report import execute_batch
sys.exit(0 if execute_batch(force_reload={force_reload}).success else 1)
"""


def start_load(home: Path, *, force_reload: bool = False) -> subprocess.Popen:
    """A batch run in its own process (as two runs of the platform are) on its own instance in `home`.

    Exits 0 when the run succeeded. Its output goes to `home`/load.log.
    """
    write_local_instance(home)
    with open(home / "load.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", LOAD.format(force_reload=force_reload)],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_two_loads_at_once_are_serialised(stack, baseline, tmp_path: Path) -> None:
    companies = {"aapl": rows(6), "msft": rows(6), "nvda": rows(2)}
    put_companies(stack, companies)
    homes = [tmp_path / "a", tmp_path / "b"]
    # While this test holds the table's lock, both loads get as far as the lock and no further.
    with holding_table_lock(stack) as holder:
        loads = [start_load(home, force_reload=True) for home in homes]
        waiting = wait_until(
            lambda: len(w := waiting_for_table_lock(stack)) == 2 and w,
            timeout=HANG_S,
            what="both loads to wait for the table's lock",
        )
        assert holder.info.backend_pid not in waiting
    for load, home in zip(loads, homes, strict=True):
        assert load.wait(HANG_S) == 0, (home / "load.log").read_text()[-3000:]
    assert stack.query(
        "SELECT company_name, stock_date::text, open_value, high_value, low_value, close_value, volume_traded FROM {t} "
        "ORDER BY 1, 2"
    ) == [
        (company, f"2017-11-{d:02d}", 10, 11, 9, 10.5, 100 + d)
        for company, body in sorted(companies.items())
        for d in range(1, body.count(b"\n") + 1)
    ]


def test_run_worker_killed_mid_load(stack, baseline, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    put_companies(stack, {"aapl": rows(5), "msft": rows(5), "nvda": rows(3)})
    output_before = stack.get("Output/historical_stock_data.csv")
    with holding_row(stack, "nvda", "2017-11-01") as holder:
        worker = start_load(home)
        [(pid, _)] = wait_until(lambda: blocked_by(stack, holder), timeout=HANG_S, what="the COPY to reach nvda")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(HANG_S)
    # PostgreSQL notices the dead client when the COPY next reads from it, and rolls the transaction back.
    wait_until(lambda: not backend_exists(stack, pid), timeout=HANG_S, what="the killed load's backend to end")
    assert stack.table_rows() == baseline
    assert stack.get("Output/historical_stock_data.csv") == output_before
    for key in stack.keys("Processed/"):
        pq.read_table(io.BytesIO(stack.get(key)))  # every frame object is whole

    with dg.DagsterInstance.from_config(str(home)) as instance:
        recovered = execute_batch(instance=instance)
    assert recovered.success and recovered.summary.names(CompanyStatus.LOADED) == ["nvda"]
    assert stack.query("SELECT count(*) FROM {t}") == [(13,)]


def test_sns_down_then_back(stack, instance) -> None:
    sink = create_notification_sink(f"down-{stack.bucket}")
    put_companies(stack, {"aapl": rows(3)})
    outcome = execute_batch(instance=instance)
    assert outcome.success
    run = instance.get_run_by_id(outcome.run_id)
    down = SNSResource(topic_arn=sink.topic_arn, endpoint_url="http://127.0.0.1:1", max_attempts=2, connect_timeout=1)
    with dg.build_resources({"sns": down}) as resources:
        assert notify(instance, run, resources.sns, _log()) is None
    run = instance.get_run_by_id(outcome.run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags[NOTIFICATION_TAG] == "pending"
    assert sink.receive(wait_seconds=1) == []

    sensors = {s.name: s for s in build_notification_sensors([], 30, dg.DefaultSensorStatus.RUNNING)}
    resources = {"sns": SNSResource(topic_arn=sink.topic_arn)}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        sensors["notification_retry_sensor"](context)
    [message] = sink.receive(wait_seconds=2)
    assert message["Subject"] == "StockPlatform_Pipeline_Success" and outcome.run_id in message["Message"]
    assert instance.get_run_by_id(outcome.run_id).tags[NOTIFICATION_TAG] == "sent"
