"""Faults injected into real parts, and what the user sees: the run's outcome, the table, the notification."""

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from stock_platform.local.report import execute_batch
from stock_platform.local.stack import create_notification_sink, write_local_instance
from stock_platform.notifications.sensors import NOTIFICATION_TAG, build_notification_sensors, notify
from stock_platform.resources.sns import SNSResource
from stock_platform_tests.faults import FlakyProxy, copy_backends, slow_down, wait_for

pytestmark = pytest.mark.integration
HEADER = b"Date,Open,High,Low,Close,Volume,OpenInt\n"


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
    slow_down(stack, "nvda", 30)
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(result=execute_batch(instance=instance)))
    worker.start()
    [pid] = wait_for(lambda: copy_backends(stack), 60, "the COPY to start")
    with stack.connect() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    worker.join(60)
    failed = outcome["result"]
    assert not failed.success and "terminat" in failed.error.lower()
    assert stack.table_rows() == baseline

    with dg.build_resources({"sns": SNSResource(topic_arn=sink.topic_arn)}) as resources:
        notify(instance, instance.get_run_by_id(failed.run_id), resources.sns, _log())
    [message] = sink.receive(wait_seconds=2)
    assert message["Subject"] == "StockPlatform_Pipeline_Failure" and "Failed step: load_stock_batch" in message["Message"]

    with stack.connect() as conn:
        conn.execute(f'DROP TRIGGER slow_load ON "{stack.schema}"."{stack.table}"')
    recovered = execute_batch(instance=instance)
    assert recovered.success and recovered.summary["companies_loaded"] == 1
    assert stack.query("SELECT company_name, count(*) FROM {t} GROUP BY 1 ORDER BY 1") == [("aapl", 5), ("msft", 5), ("nvda", 3)]


def _log():
    import logging

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


def test_a_permanent_s3_failure_names_the_object(stack, instance, monkeypatch) -> None:
    put_companies(stack, {"aapl": rows(4), "broken": rows(4)})
    fault = lambda method, path, n: 500 if method == "GET" and "broken.us.txt" in path else None  # noqa: E731
    with FlakyProxy(stack.endpoint, fault) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("STOCK_PLATFORM_S3_MAX_ATTEMPTS", "3")
        outcome = execute_batch(instance=instance)
    assert not outcome.success
    assert f"s3://{stack.bucket}/Stocks/broken.us.txt" in outcome.error
    assert proxy.injected == 3  # the attempts configured, then a clean failure
    assert stack.query("SELECT count(*) FROM {t}") == [(0,)]


def test_two_loads_at_once_are_serialised(stack, baseline, tmp_path: Path) -> None:
    put_companies(stack, {"aapl": rows(6), "msft": rows(6), "nvda": rows(2)})
    slow_down(stack, "nvda", 2)
    results: list = []

    def load(home: Path) -> None:
        home.mkdir()
        with dg.instance_for_test(temp_dir=str(home)) as own:
            results.append(execute_batch(instance=own, force_reload=True))

    first = threading.Thread(target=load, args=(tmp_path / "a",))
    second = threading.Thread(target=load, args=(tmp_path / "b",))
    def advisory_locks(granted: bool) -> int:
        with stack.connect() as conn:
            query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = %s"
            return conn.execute(query, (granted,)).fetchone()[0]

    first.start()
    wait_for(lambda: advisory_locks(granted=True), 60, "the first load to take the table's lock")
    second.start()
    wait_for(lambda: advisory_locks(granted=False), 60, "the second load to wait for the first")
    first.join(120)
    second.join(120)
    assert [r.success for r in results] == [True, True]
    assert stack.query("SELECT company_name, count(*) FROM {t} GROUP BY 1 ORDER BY 1") == [("aapl", 6), ("msft", 6), ("nvda", 2)]


def test_run_worker_killed_mid_load(stack, baseline, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_local_instance(home)
    put_companies(stack, {"aapl": rows(5), "msft": rows(5), "nvda": rows(3)})
    output_before = stack.get("Output/historical_stock_data.csv")
    slow_down(stack, "nvda", 3)
    worker = subprocess.Popen(
        [sys.executable, "-c", "from stock_platform.local.report import execute_batch; execute_batch()"],
        env={**os.environ, "DAGSTER_HOME": str(home)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: copy_backends(stack), 60, "the COPY to start")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    # PostgreSQL notices the dead client when the COPY next reads from it, and rolls the transaction back.
    wait_for(lambda: not copy_backends(stack), 60, "the killed load to end")
    with stack.connect() as conn:
        conn.execute(f'DROP TRIGGER slow_load ON "{stack.schema}"."{stack.table}"')
    assert stack.table_rows() == baseline
    assert stack.get("Output/historical_stock_data.csv") == output_before
    for key in stack.keys("Processed/"):
        pq.read_table(io.BytesIO(stack.get(key)))  # every frame object is whole

    with dg.DagsterInstance.from_config(str(home)) as instance:
        recovered = execute_batch(instance=instance)
    assert recovered.success and recovered.summary["companies_loaded"] == 1
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

    retry = {s.name: s for s in build_notification_sensors([], 30, dg.DefaultSensorStatus.RUNNING)}["notification_retry_sensor"]
    with dg.build_sensor_context(instance=instance, resources={"sns": SNSResource(topic_arn=sink.topic_arn)}) as context:
        retry(context)
    [message] = sink.receive(wait_seconds=2)
    assert message["Subject"] == "StockPlatform_Pipeline_Success" and outcome.run_id in message["Message"]
    assert instance.get_run_by_id(outcome.run_id).tags[NOTIFICATION_TAG] == "sent"
