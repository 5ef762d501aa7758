"""The local instance's event log (stock_platform/event_log.py) keeps its connections open between writes and
still behaves as Dagster's SQLite storage: what one process writes, another reads and sees live."""

import time
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.storage.dagster_run import DagsterRun

from stock_platform.event_log import OPEN_RUN_SHARDS, HeldSqliteEventLogStorage
from stock_platform.local.stack import write_local_instance
from stock_platform_tests.waiting import wait_until

RUN = "0b2f7c1e-run"


def materialization(run_id: str, partition: str) -> dg.EventLogEntry:
    event = DagsterEvent(
        DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="job",
        step_key="step",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(asset_key="frames", partition=partition, metadata={"rows": 3})
        ),
    )
    return dg.EventLogEntry(
        user_message="",
        level=10,
        job_name="job",
        run_id=run_id,
        error_info=None,
        timestamp=time.time(),
        step_key="step",
        dagster_event=event,
    )


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
