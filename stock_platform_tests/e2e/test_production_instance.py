"""The production dagster.yaml boots against a real PostgreSQL and carries a run and sensor ticks.

Dagster's storage goes to a fresh database on the test server (embedded or STOCK_PLATFORM_TEST_DATABASE_URL);
credentials come from the DAGSTER_PG_* variables, as in production, and DAGSTER_PG_PORT from the image's default
(the Dockerfile's ENV) unless the server listens elsewhere.
"""

import os
import re
import shlex
import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from stock_platform.local import sample
from stock_platform.local.stack import PROJECT_ROOT
from stock_platform_tests.processes import dagster_command, running
from stock_platform_tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.daemon]


def image_defaults() -> dict[str, str]:
    """The Dockerfile's ENV: what every container of the image starts with."""
    text = re.sub(r"\\\n", " ", (PROJECT_ROOT / "Dockerfile").read_text())
    return dict(p.split("=", 1) for line in text.splitlines() if line.startswith("ENV ") for p in shlex.split(line[4:]))


@pytest.fixture
def production_home(stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    database = f"dagster_{uuid.uuid4().hex[:8]}"
    with stack.connect() as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = make_url(stack.database_url)
    env = {"DAGSTER_PG_PORT": image_defaults()["DAGSTER_PG_PORT"]}
    if url.port and str(url.port) != env["DAGSTER_PG_PORT"]:
        env["DAGSTER_PG_PORT"] = str(url.port)
    if url.host:
        env["DAGSTER_PG_HOST"] = url.host
    else:  # the embedded server listens on a unix socket: an empty host makes libpq use PGHOST
        env |= {"DAGSTER_PG_HOST": "", "PGHOST": url.query["host"]}
    env |= {
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": database,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    yield home
    with stack.connect() as conn:
        conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def test_production_instance_stores_runs_in_postgres_and_runs_the_sensor(stack, production_home: Path) -> None:
    with dg.DagsterInstance.from_config(str(production_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "HeldPostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled and instance.run_retries_enabled

    sample.upload(sample.generate(companies=10, listed=6, min_rows=50, max_rows=80), stack.put)
    stack.put("batch.SUCCESS", b"")
    env = {**os.environ, "STOCK_PLATFORM_SENSOR_INTERVAL_SECONDS": "2"}
    with (
        running(dagster_command("dagster-daemon", "run"), env),
        dg.DagsterInstance.from_config(str(production_home)) as instance,
    ):
        runs = wait_until(
            lambda: [r for r in instance.get_runs() if r.is_finished], timeout=600, what="the marker's run to finish"
        )
        assert len(instance.get_runs()) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS, runs
        run = runs[0]
        assert run.tags["stock_platform/target"] == "historical_stocks_data"  # the coordinator's limit key
        assert instance.get_dynamic_partitions("company")  # the sensor's partition requests landed in PG
        # The frames' materializations, recorded in batches (dagster-postgres writes one in one statement).
        recorded = instance.get_materialized_partitions(dg.AssetKey("company_stock_prices"))
    loaded = {row[0] for row in stack.query("SELECT DISTINCT company_name FROM {t}")}
    assert loaded and loaded <= recorded


@dg.asset
def numbers() -> dg.MaterializeResult:  # type: ignore[type-arg]
    return dg.MaterializeResult(metadata={"count": 3})


def test_the_event_log_holds_one_connection_and_replaces_one_the_server_dropped(stack, production_home: Path) -> None:
    """stock_platform/event_log.py: a process writes its events on one held connection, not one per event, and a
    connection the server dropped (a failover, an idle timeout) is replaced before it is used."""

    def backends() -> list[int]:
        with stack.connect() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (os.environ["DAGSTER_PG_DB"],),
            ).fetchall()
        return [row[0] for row in rows]

    with dg.DagsterInstance.from_config(str(production_home)) as instance:
        assert type(instance.event_log_storage).__name__ == "HeldPostgresEventLogStorage"
        assert dg.materialize([numbers], instance=instance).success
        [held] = backends()  # the run's ~15 events, and only the event log's connection still open
        for _ in range(20):
            instance.report_runless_asset_event(dg.AssetMaterialization("numbers"))
        assert backends() == [held]

        with stack.connect() as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (held,))
        wait_until(lambda: held not in backends(), timeout=60, what="the server to drop the connection")
        instance.report_runless_asset_event(dg.AssetMaterialization("numbers", metadata={"after": True}))
        [replacement] = backends()
        assert replacement != held
        records = instance.fetch_materializations(dg.AssetKey("numbers"), limit=100).records
        assert len(records) == 22 and records[0].asset_materialization.metadata["after"].value is True
