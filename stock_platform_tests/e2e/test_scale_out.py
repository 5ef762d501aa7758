"""Past one machine, shown locally: runs over disjoint company ranges, queued and launched by Dagster itself.

The path docs/operating.md gives a team that outgrows one machine: split the companies into ranges, one run per
range, each run its own process (its own ECS task in production: the run launcher decides, not the platform),
the queued run coordinator letting N of them run at once, and the table load serialised by the advisory lock.
Here three ranges are submitted with `dagster job launch` to an instance whose queue allows three batch runs at
a time; the real `dagster-daemon` dequeues and launches them as separate processes. Their table must equal, row
for row, the table one run over every company loads.
"""

import json
import os
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from stock_platform.batch.partitions import COMPANY_PARTITIONS, partition_range_tags
from stock_platform.batch.pipeline import EXTRACT_VERSION
from stock_platform.batch.warehouse import Target
from stock_platform.cli import main
from stock_platform.local import sample
from stock_platform.local.stack import local_instance_yaml
from stock_platform_tests.conftest import psycopg_dsn
from stock_platform_tests.faults import lock_waiters
from stock_platform_tests.processes import dagster_command, running
from stock_platform_tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.daemon]
HANG_S = 600  # bounds a hang, never reached on a slow machine
RANGES = 3


def instance_yaml(home: Path) -> str:
    """The local instance, with a queue that admits RANGES batch runs at once (a team raises this limit to scale
    out)."""
    return local_instance_yaml(home).replace("        limit: 1\n", f"        limit: {RANGES}\n")


def rows(database_url: str, schema: str, table: str) -> list[tuple]:
    with psycopg.connect(psycopg_dsn(database_url)) as conn:
        return conn.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY company_name, stock_date').fetchall()


def test_concurrent_runs_over_disjoint_ranges_load_what_one_run_loads(stack, tmp_path, monkeypatch) -> None:
    batch = sample.generate(companies=30, listed=24, min_rows=200, max_rows=300)
    sample.upload(batch, stack.put)

    # The reference: one run over every listed company, in a schema of its own.
    reference = f"{stack.schema}_one"
    with stack.connect() as conn:
        conn.execute(f'CREATE SCHEMA "{reference}"')
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("STOCK_PLATFORM_DB_SCHEMA", reference)
    assert main(["load"]) == 0
    expected = rows(stack.database_url, reference, stack.table)
    assert len(expected) > 1000

    # The same companies in three ranges, three runs, through the queue and the daemon.
    monkeypatch.setenv("STOCK_PLATFORM_DB_SCHEMA", stack.schema)
    with dg.DagsterInstance.get() as instance:
        companies = sorted(instance.get_dynamic_partitions(COMPANY_PARTITIONS))
        before = {run.run_id for run in instance.get_runs()}
    size = -(-len(companies) // RANGES)
    ranges = [companies[i : i + size] for i in range(0, len(companies), size)]
    assert len(ranges) == RANGES and sum(map(len, ranges)) == len(companies)

    env = {**os.environ, "STOCK_PLATFORM_SENSORS_ENABLED": "false"}  # runs come from the launches only
    # Submitted before the daemon runs, the three wait in the queue; the daemon then dequeues all three at once.
    for keys in ranges:
        tags = json.dumps(partition_range_tags(keys))
        log = tmp_path / f"launch-{keys[0]}.log"
        launch = dagster_command("dagster", "job", "launch", "-j", "stock_batch_job", "--tags", tags)
        with running(launch, env, log) as process:
            assert process.wait(HANG_S) == 0, log.read_text()[-3000:]
    with dg.DagsterInstance.get() as instance:
        queued = [r for r in instance.get_runs() if r.run_id not in before]
    assert [r.status for r in queued] == [dg.DagsterRunStatus.QUEUED] * RANGES

    def finished() -> list[dg.DagsterRun] | None:
        with dg.DagsterInstance.get() as instance:
            launched = [r for r in instance.get_runs() if r.run_id not in before]
        return launched if all(r.is_finished for r in launched) else None

    # The test holds the table's lock while the daemon launches the runs: all three reaching it and waiting, each
    # in its own process, is what shows they run at once (without asserting anything about time).
    key = Target(stack.schema, stack.table).lock_key
    with psycopg.connect(psycopg_dsn(stack.database_url), autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        with running(dagster_command("dagster-daemon", "run"), env, tmp_path / "daemon.log"):
            wait_until(
                lambda: len(lock_waiters(holder, key)) == RANGES,
                timeout=HANG_S,
                what=f"{RANGES} range runs waiting for the table's lock at once",
                interval=1,
            )
            holder.execute("COMMIT")
            launched = wait_until(finished, timeout=HANG_S, what=f"{RANGES} range runs to finish", interval=1)

    log = (tmp_path / "daemon.log").read_text()[-3000:]
    assert [r.status for r in launched] == [dg.DagsterRunStatus.SUCCESS] * RANGES, log
    assert rows(stack.database_url, stack.schema, stack.table) == expected
    # Whichever run rewrote the extract last read the newest table: it holds every row, at the table's version.
    [(version,)] = stack.query("SELECT version FROM {s}.historical_stocks_data_state")
    extract = stack.s3.get_object(Bucket=stack.bucket, Key="Output/historical_stock_data.csv")
    assert extract["Metadata"][EXTRACT_VERSION] == str(version) and version == RANGES
    assert extract["Body"].read().count(b"\n") == len(expected)
    with stack.connect() as conn:
        conn.execute(f'DROP SCHEMA "{reference}" CASCADE')
