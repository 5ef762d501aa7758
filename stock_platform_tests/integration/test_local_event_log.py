"""The local instance's event log (stock_platform/event_log.py) keeps its connections open between writes and
still behaves as Dagster's SQLite storage: what one process writes, another reads and sees live."""

import sqlite3
import time
from pathlib import Path

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.events import (
    AssetMaterializationPlannedData,
    AssetObservationData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.storage.dagster_run import DagsterRun

from stock_platform.event_log import OPEN_RUN_SHARDS, HeldSqliteEventLogStorage
from stock_platform.local.stack import write_local_instance
from stock_platform_tests.waiting import wait_until

RUN = "0b2f7c1e-run"


def entry(run_id: str, event: DagsterEvent, timestamp: float | None = None) -> dg.EventLogEntry:
    return dg.EventLogEntry(
        user_message="",
        level=10,
        job_name="job",
        run_id=run_id,
        error_info=None,
        timestamp=time.time() if timestamp is None else timestamp,
        step_key="step",
        dagster_event=event,
    )


def materialization(
    run_id: str, partition: str, asset: str = "frames", timestamp: float | None = None
) -> dg.EventLogEntry:
    event = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="job",
        step_key="step",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(asset_key=asset, partition=partition, metadata={"rows": 3})
        ),
    )
    return entry(run_id, event, timestamp)


def observation(run_id: str, partition: str, version: str, timestamp: float) -> dg.EventLogEntry:
    event = DagsterEvent(
        DagsterEventType.ASSET_OBSERVATION.value,
        job_name="job",
        step_key="step",
        event_specific_data=AssetObservationData(
            dg.AssetObservation(asset_key="files", partition=partition, tags={DATA_VERSION_TAG: version})
        ),
    )
    return entry(run_id, event, timestamp)


def contents(db_file: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of a SQLite database, in insertion order, but for when its migrations ran and the
    columns SQLite fills from the clock (`asset_keys.create_timestamp`): two stores a second apart differ there."""
    with sqlite3.connect(db_file) as conn:
        tables = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if row[0] != "secondary_indexes"
        ]
        rows: dict[str, list[tuple[object, ...]]] = {}
        for table in tables:
            # PRAGMA table_info: (cid, name, type, notnull, default, pk)
            info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            columns = ", ".join(f'"{c[1]}"' for c in info if "CURRENT_TIMESTAMP" not in str(c[4]).upper())
            rows[table] = conn.execute(f'SELECT {columns} FROM "{table}" ORDER BY rowid').fetchall()
        return rows


def partitions_of(storage: HeldSqliteEventLogStorage, run_id: str) -> list[str]:
    records = storage.get_records_for_run(run_id).records
    return [r.event_log_entry.dagster_event.partition for r in records if r.event_log_entry.dagster_event is not None]


@dg.asset
def numbers() -> dg.MaterializeResult:  # type: ignore[type-arg]
    return dg.MaterializeResult(metadata={"count": 3})


def test_the_local_instance_records_runs_in_the_held_event_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_local_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, HeldSqliteEventLogStorage)
        result = dg.materialize([numbers], instance=instance)
        assert result.success
    # Where Dagster's default storage keeps it, and readable by another instance (another process).
    assert (home / "history" / "runs" / f"{result.run_id}.db").exists()
    with dg.DagsterInstance.from_config(str(home)) as reader:
        latest = reader.get_latest_materialization_event(dg.AssetKey("numbers"))
        assert latest is not None and latest.run_id == result.run_id
        assert latest.asset_materialization is not None
        assert latest.asset_materialization.metadata["count"] == dg.IntMetadataValue(3)
        assert reader.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]


def test_a_run_is_followed_live_while_it_writes(tmp_path: Path) -> None:
    """The webserver follows a run by watching its shard's .db file: each write must reach it, not wait in the
    -wal file for the connection to close."""
    base = str(tmp_path / "runs")
    writer, watcher = HeldSqliteEventLogStorage(base), HeldSqliteEventLogStorage(base)
    seen: list[str | None] = []
    try:
        writer.store_event(materialization(RUN, "a"))  # the shard exists before it is watched
        watcher.watch(RUN, None, lambda entry, _cursor: seen.append(entry.dagster_event.partition))
        for partition in ("b", "c", "d"):
            writer.store_event(materialization(RUN, partition))
            wait_until(lambda p=partition: p in seen, timeout=30, what=f"the watcher to see {partition}")
        assert seen[-3:] == ["b", "c", "d"]
    finally:
        writer.dispose()
        watcher.dispose()


def test_only_the_most_recent_run_shards_stay_open_and_the_others_reopen(tmp_path: Path) -> None:
    storage = HeldSqliteEventLogStorage(str(tmp_path / "runs"))
    try:
        runs = [f"run-{i}" for i in range(OPEN_RUN_SHARDS + 2)]
        for run_id in runs:
            storage.store_event(materialization(run_id, run_id))
        assert sorted(storage._engines) == sorted(["index", *runs[-OPEN_RUN_SHARDS:]])
        storage.store_event(materialization(runs[0], "again"))  # closed, so opened again
        assert partitions_of(storage, runs[0]) == [runs[0], "again"]
        # Every event also reached the cross-run index.
        assert len(storage.get_latest_materialization_events([dg.AssetKey("frames")])) == 1
        assert storage.get_materialized_partitions(dg.AssetKey("frames")) == {*runs, "again"}
    finally:
        storage.dispose()


def test_wipe_closes_the_run_shards_it_deletes(tmp_path: Path) -> None:
    storage = HeldSqliteEventLogStorage(str(tmp_path / "runs"))
    try:
        storage.store_event(materialization(RUN, "before"))
        storage.wipe()
        assert not (tmp_path / "runs" / f"{RUN}.db").exists()
        storage.store_event(materialization(RUN, "after"))  # a new shard, not the deleted file's connection
        assert partitions_of(storage, RUN) == ["after"]
        assert (tmp_path / "runs" / f"{RUN}.db").exists()
        reader = HeldSqliteEventLogStorage(str(tmp_path / "runs"))
        assert partitions_of(reader, RUN) == ["after"]
        reader.dispose()
    finally:
        storage.dispose()


def test_a_run_recorded_before_the_switch_reads_the_same(tmp_path: Path) -> None:
    """An instance written by Dagster's own SQLite storage (a checkout from before) is read as it was."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        before = dg.materialize([numbers], instance=instance).run_id
    write_local_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, HeldSqliteEventLogStorage)
        after = dg.materialize([numbers], instance=instance).run_id
        records = instance.fetch_materializations(dg.AssetKey("numbers"), limit=10).records
        assert {r.run_id for r in records} == {before, after}
        assert isinstance(instance.get_run_by_id(before), DagsterRun)


def test_a_home_whose_path_yaml_would_misread_still_gets_its_event_log_there(tmp_path: Path) -> None:
    home = tmp_path / "a: b #c"
    write_local_instance(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([numbers], instance=instance).success
    assert list((home / "history" / "runs").glob("*.db"))


def batches(run_id: str) -> list[list[dg.EventLogEntry]]:
    """Batches as Dagster hands them over: a partitioned observation, then materializations of two assets."""
    start = 1_700_000_000.0
    observed = [observation(run_id, f"c{i}", f"v{i}", start + i) for i in range(5)]
    frames = [materialization(run_id, f"c{i}", timestamp=start + 10 + i) for i in range(5)]
    mixed = [materialization(run_id, f"d{i}", "frames" if i % 2 else "table", start + 20 + i) for i in range(4)]
    return [observed, frames, mixed]


def test_a_batch_is_stored_as_storing_its_events_one_by_one_would_store_it(tmp_path: Path) -> None:
    one_by_one, batched = (
        HeldSqliteEventLogStorage(str(tmp_path / "one")),
        HeldSqliteEventLogStorage(str(tmp_path / "b")),
    )
    try:
        for batch in batches(RUN):
            for event in batch:
                one_by_one.store_event(event)
            batched.store_event_batch(batch)
        for name in (RUN, "index"):
            expected = contents(tmp_path / "one" / f"{name}.db")
            assert expected["event_logs"]  # the comparison compares something
            assert contents(tmp_path / "b" / f"{name}.db") == expected, name
        # Read back as Dagster reads it: each asset's latest event, and the observations' data versions.
        assert batched.get_materialized_partitions(dg.AssetKey("frames")) == {f"c{i}" for i in range(5)} | {"d1", "d3"}
        [table] = batched.get_latest_materialization_events([dg.AssetKey("table")]).values()
        assert table is not None and table.dagster_event.partition == "d2"  # type: ignore[union-attr]
        tags = batched.get_event_tags_for_asset(dg.AssetKey("files"))
        assert sorted(t[DATA_VERSION_TAG] for t in tags) == [f"v{i}" for i in range(5)]
    finally:
        one_by_one.dispose()
        batched.dispose()


def test_a_batch_is_one_transaction_per_database(tmp_path: Path, monkeypatch) -> None:
    storage = HeldSqliteEventLogStorage(str(tmp_path / "runs"))
    storage.store_event(materialization(RUN, "first"))  # the databases exist, as in a run
    opened: list[str] = []
    connect = HeldSqliteEventLogStorage._connect
    monkeypatch.setattr(
        HeldSqliteEventLogStorage, "_connect", lambda self, shard: opened.append(shard) or connect(self, shard)
    )
    try:
        storage.store_event_batch([materialization(RUN, f"c{i}") for i in range(20)])
        assert opened == [RUN, "index"]
        assert len(partitions_of(storage, RUN)) == 21
    finally:
        storage.dispose()


def test_other_batches_are_stored_event_by_event(tmp_path: Path) -> None:
    storage = HeldSqliteEventLogStorage(str(tmp_path / "runs"))
    planned = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
        job_name="job",
        event_specific_data=AssetMaterializationPlannedData(dg.AssetKey("frames"), partition="c0"),
    )
    try:
        storage.store_event_batch([entry(RUN, planned), materialization(RUN, "c0")])
        types = [r.event_log_entry.dagster_event_type for r in storage.get_records_for_run(RUN).records]
        assert types == [DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_MATERIALIZATION]
    finally:
        storage.dispose()
