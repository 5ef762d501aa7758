"""The whole graph against moto's HTTP server and a real PostgreSQL: counts, idempotence, atomicity."""

import csv
import datetime as dt
import hashlib
import io

import dagster as dg
import pyarrow.parquet as pq
import pytest

from stock_platform.batch import assets, pipeline, warehouse
from stock_platform.batch.keys import COMPANY_STOCK_PRICES
from stock_platform.batch.summary import CompanyStatus, ExtractState
from stock_platform.definitions import defs
from stock_platform.event_log import HeldSqliteEventLogStorage, log_materializations
from stock_platform.local import sample
from stock_platform.local.report import execute_batch
from stock_platform.local.stack import write_local_instance
from stock_platform.runtime import EVENT_BATCH_SIZE
from stock_platform_tests.frames import frame

pytestmark = pytest.mark.integration

COMPANIES, LISTED = 30, 16


@pytest.fixture
def batch(stack) -> sample.SampleBatch:
    generated = sample.generate(companies=COMPANIES, listed=LISTED, min_rows=200, max_rows=300)
    sample.upload(generated, stack.put)
    return generated


def data_lines(content: bytes) -> int:
    return len(content.decode().splitlines()[1:]) if content else 0


def listed_files(batch: sample.SampleBatch) -> dict[str, bytes]:
    """Listed company -> file content, worked out from the sample itself (the list names .csv, files are .txt)."""
    tickers = {e.split(".")[0] for e in batch.listed}
    return {n.split(".")[0]: c for n, c in batch.files.items() if n.split(".")[0] in tickers}


def table_digest(stack) -> str:
    return hashlib.sha256(repr(stack.table_rows()).encode()).hexdigest()


def test_batch_loads_exactly_the_listed_rows_and_reconciles(stack, batch, instance) -> None:
    outcome = execute_batch(instance=instance)
    assert outcome.success, outcome.error

    files = listed_files(batch)
    normal = {
        c: f
        for c, f in files.items()
        if c not in (sample.BAD_ROWS_COMPANY, sample.EMPTY_COMPANY, sample.HEADER_ONLY_COMPANY)
    }
    expected_rows = sum(data_lines(f) for f in normal.values()) + 50  # badr: 50 good rows, 5 bad, 1 duplicate
    counts = dict(stack.query("SELECT company_name, count(*) FROM {t} GROUP BY 1"))
    assert sum(counts.values()) == expected_rows
    assert set(counts) == set(normal) | {sample.BAD_ROWS_COMPANY}
    assert all(counts[c] == data_lines(f) for c, f in normal.items())

    s = outcome.summary
    assert s.rows.read == expected_rows + 5 + 1
    assert (s.rows.valid, s.rows.rejected, s.rows.duplicates) == (expected_rows, 5, 1)
    assert s.rows.reconciles
    assert s.count(CompanyStatus.LOADED) == len(normal) + 1 and s.count(CompanyStatus.EMPTY) == 2
    assert s.missing == (f"{sample.MISSING_COMPANY}.us.csv",)
    assert s.names(CompanyStatus.EMPTY) == [sample.EMPTY_COMPANY, sample.HEADER_ONLY_COMPANY]
    # What was committed, from the database's own counts, and the table as it stands.
    assert s.commit is not None and s.commit.rows_inserted == expected_rows and s.committed_rows == expected_rows
    assert s.table is not None and s.table.rows == expected_rows and s.table.version == s.commit.version
    assert s.extract is not None and s.extract.regenerated and s.extract.version == s.table.version

    # Rejected rows are kept with their reason.
    rejects = list(
        csv.DictReader(io.StringIO(stack.get(f"Rejected/{outcome.run_id}/{sample.BAD_ROWS_COMPANY}.csv").decode()))
    )
    assert len(rejects) == 5
    assert {r["reason"] for r in rejects} == {
        "Date is not a valid ISO date (YYYY-MM-DD)",
        "Open is missing",
        "Close is not a finite number",
        "Volume is not a non-negative integer",
        "expected 7 fields, found 3",
    }

    # The Output CSV: every loaded row, table column order, no header.
    output = stack.get("Output/historical_stock_data.csv").decode().splitlines()
    assert len(output) == expected_rows
    first = next(csv.reader([output[0]]))
    assert len(first) == 9 and dt.date.fromisoformat(first[0]) and first[8] in counts

    # The Parquet frame of a company holds exactly its table rows, and Dagster reads it back.
    company = sorted(normal)[0]
    frame = pq.read_table(io.BytesIO(stack.get(f"Processed/company={company}/prices.parquet")))
    assert frame.num_rows == counts[company]
    loaded = defs().load_asset_value("company_stock_prices", partition_key=company, instance=instance)
    assert loaded.equals(frame.to_pandas())  # data scientists get pandas; pyarrow stays the engine


def test_values_round_trip_exactly(stack, instance) -> None:
    stack.put("CompanyNames/top_companies.txt", b"'exact.us.csv'")
    stack.put(
        "Stocks/exact.us.txt",
        b"Date,Open,High,Low,Close,Volume,OpenInt\n"
        b"2017-11-10,0.1,0.30000000000000004,0.0001,0.3,9223372036854775,0\n"
        b"2017-11-13,0,1e-7,0,123456.789012345,0,0\n",
    )
    assert execute_batch(instance=instance).success
    rows = stack.query(
        "SELECT stock_date, open_value, high_value, low_value, close_value, volume_traded, daily_percent_change, "
        "value_change, company_name FROM {t} ORDER BY stock_date"
    )
    assert rows == [
        (
            dt.date(2017, 11, 10),
            0.1,
            0.30000000000000004,
            0.0001,
            0.3,
            9223372036854775,
            (0.3 - 0.1) / 0.1 * 100,
            0.3 - 0.1,
            "exact",
        ),
        (dt.date(2017, 11, 13), 0.0, 1e-7, 0.0, 123456.789012345, 0, None, 123456.789012345, "exact"),
    ]
    output = stack.get("Output/historical_stock_data.csv").decode().splitlines()
    assert output[0].split(",")[:6] == ["2017-11-10", "0.1", "0.30000000000000004", "0.0001", "0.3", "9223372036854775"]


def test_rerun_is_idempotent_and_skips_unchanged_files(stack, batch, instance) -> None:
    assert execute_batch(instance=instance).success
    before = table_digest(stack)
    second = execute_batch(instance=instance)
    assert second.success
    assert second.summary.count(CompanyStatus.UNCHANGED) == len(second.summary.companies)
    assert second.summary.rows.read == 0 and second.summary.commit is None
    assert second.summary.extract is not None and not second.summary.extract.regenerated
    assert table_digest(stack) == before

    forced = execute_batch(instance=instance, force_reload=True)
    assert forced.success and forced.summary.count(CompanyStatus.UNCHANGED) == 0
    assert table_digest(stack) == before
    assert stack.query(
        "SELECT count(*) FROM (SELECT company_name, stock_date FROM {t} GROUP BY 1, 2 HAVING count(*) > 1) d"
    ) == [(0,)]


def test_a_changed_file_replaces_exactly_that_companys_rows(stack, batch, instance) -> None:
    assert execute_batch(instance=instance).success
    files = listed_files(batch)
    changed, other = sorted(c for c in files if c not in ("badr", "empt", "hdro"))[:2]
    other_rows = stack.query("SELECT * FROM {t} WHERE company_name = %s ORDER BY stock_date", (other,))
    name = next(n for n in batch.files if n.split(".")[0] == changed)
    lines = files[changed].decode().splitlines()
    stack.put(f"Stocks/{name}", ("\n".join(lines[:11]) + "\n").encode())  # header + 10 rows

    outcome = execute_batch(instance=instance)
    assert outcome.success and outcome.summary.names(CompanyStatus.LOADED) == [changed]
    assert outcome.summary.commit is not None and outcome.summary.commit.companies == (changed,)
    assert stack.query("SELECT count(*) FROM {t} WHERE company_name = %s", (changed,)) == [(10,)]
    assert stack.query("SELECT * FROM {t} WHERE company_name = %s ORDER BY stock_date", (other,)) == other_rows


def test_the_summary_counts_the_table_again_when_another_write_lands_after_the_checks(
    stack, batch, instance, monkeypatch
) -> None:
    """The checks' counts stand for the table only while its version holds: a run committing in between (here
    right after the extract) makes the summary count the table as it now is, and the extract say it is older."""
    export = pipeline.BatchRun.export

    def export_then_another_run_commits(run: pipeline.BatchRun) -> ExtractState:
        extract = export(run)
        with run.postgres.connect() as conn:
            warehouse.replace_companies(conn, run.target, {"zzzz": frame("zzzz", [1.0])}, "another-run")
        return extract

    monkeypatch.setattr(pipeline.BatchRun, "export", export_then_another_run_commits)
    outcome = execute_batch(instance=instance)
    assert outcome.success, outcome.error
    s = outcome.summary
    assert s.commit is not None and s.table is not None and s.extract is not None
    rows = stack.query("SELECT count(*), count(DISTINCT company_name) FROM {t}")[0]
    assert (s.table.rows, s.table.companies) == rows and s.table.version == s.commit.version + 1
    assert s.extract.version == s.commit.version and s.extract.rows == s.table.rows - 1


def test_a_failure_mid_load_leaves_the_table_as_it_was(stack, batch, instance) -> None:
    assert execute_batch(instance=instance).success
    before = table_digest(stack)
    files = listed_files(batch)
    first, last = sorted(c for c in files if c not in ("badr", "empt", "hdro"))[:: len(files) - 4][:2]
    for company in (first, last):
        name = next(n for n in batch.files if n.split(".")[0] == company)
        stack.put(f"Stocks/{name}", files[company] + b"2019-01-02,1,1,1,1,1,0\n")
    # A real PostgreSQL error in the middle of the load: the second company's rows make a trigger raise.
    with stack.connect() as conn:
        conn.execute(
            f"""CREATE FUNCTION "{stack.schema}".boom() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.company_name = '{last}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$"""
        )
        conn.execute(
            f'CREATE TRIGGER boom BEFORE INSERT OR UPDATE ON "{stack.schema}"."{stack.table}" '
            f'FOR EACH ROW EXECUTE FUNCTION "{stack.schema}".boom()'
        )

    failed = execute_batch(instance=instance)
    assert not failed.success and "injected failure" in failed.error
    assert table_digest(stack) == before
    # The summary says the rollback: two files processed, nothing committed, the table's real row count.
    assert failed.summary is not None and failed.summary.commit is None
    assert failed.summary.processed == sorted([first, last])
    assert failed.summary.table is not None and failed.summary.table.rows == len(stack.table_rows())
    # The failed run's ledger write rolled back too, so the changed files still count as changed.
    with stack.connect() as conn:
        conn.execute(f'DROP TRIGGER boom ON "{stack.schema}"."{stack.table}"')
    recovered = execute_batch(instance=instance)
    assert recovered.success and recovered.summary.count(CompanyStatus.LOADED) == 2
    assert stack.query("SELECT count(*) FROM {t} WHERE stock_date = '2019-01-02'") == [(2,)]


def test_hand_picked_companies_load_in_one_run(stack, batch, instance) -> None:
    files = listed_files(batch)
    picked = sorted(c for c in files if c not in ("badr", "empt", "hdro"))[:3]
    outcome = execute_batch(instance=instance, companies=picked)
    assert outcome.success and len(outcome.summary.companies) == 3
    assert [r[0] for r in stack.query("SELECT DISTINCT company_name FROM {t} ORDER BY 1")] == picked
    runs = instance.get_runs()
    assert len(runs) == 1
    # The table is one asset, not a partition per company: a run without partitions records its checks too.
    checks = instance.get_records_for_run(runs[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    recorded = {r.event_log_entry.dagster_event.event_specific_data.check_name for r in checks}
    assert {"has_unique_keys", "has_consistent_ohlc"} <= recorded


def test_materializations_are_recorded_per_processed_company(stack, batch, instance) -> None:
    assert execute_batch(instance=instance).success
    frames = instance.fetch_materializations(dg.AssetKey("company_stock_prices"), limit=1000).records
    table = instance.fetch_materializations(dg.AssetKey("historical_stocks_data"), limit=1000).records
    processed = {r.partition_key for r in frames}
    assert processed == set(listed_files(batch)) - {sample.MISSING_COMPANY}
    # One table materialization for the run, naming what it committed: a file rejected whole would not be in it;
    # here every processed company loads.
    [record] = table
    metadata = record.asset_materialization.metadata
    assert set(metadata["committed_companies"].value) == processed
    assert metadata["companies_committed"].value == len(processed)
    assert metadata["dagster/row_count"].value == stack.query("SELECT count(*) FROM {t}")[0][0]
    assert f"| {sample.BAD_ROWS_COMPANY} | 50 |" in metadata["companies"].value  # each company's rows and dates
    badr = next(r for r in frames if r.partition_key == sample.BAD_ROWS_COMPANY).asset_materialization.metadata
    assert (
        badr["rows_read"].value,
        badr["rows_loaded"].value,
        badr["rows_rejected"].value,
        badr["duplicates_dropped"].value,
    ) == (56, 50, 5, 1)

    assert execute_batch(instance=instance).success  # nothing changed: nothing new recorded per company
    assert len(instance.fetch_materializations(dg.AssetKey("company_stock_prices"), limit=1000).records) == len(frames)


def test_the_local_instance_stores_each_group_of_frames_in_one_write(stack, batch, tmp_path, monkeypatch) -> None:
    """Each group of frames stored by the time the step records them is one write to the event log (a batch: one
    transaction per database; a group of one is stored alone, as Dagster does), and every processed company still
    has its own materialization."""
    home = tmp_path / "home"
    write_local_instance(home)
    groups: list[list[str]] = []
    writes: list[list[str]] = []

    def grouping(context, materializations):
        groups.append(sorted(m.partition for m in materializations))
        return log_materializations(context, materializations)

    def frames_of(events) -> list[str]:
        return sorted(
            e.dagster_event.partition
            for e in events
            if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
            and e.dagster_event.asset_key == COMPANY_STOCK_PRICES
        )

    store_event, store_event_batch = HeldSqliteEventLogStorage.store_event, HeldSqliteEventLogStorage.store_event_batch

    def one(self, event):
        if written := frames_of([event]):
            writes.append(written)
        store_event(self, event)

    def many(self, events):
        writes.append(frames_of(events))
        store_event_batch(self, events)

    monkeypatch.setattr(assets, "log_materializations", grouping)
    monkeypatch.setattr(HeldSqliteEventLogStorage, "store_event", one)
    monkeypatch.setattr(HeldSqliteEventLogStorage, "store_event_batch", many)
    monkeypatch.delenv(EVENT_BATCH_SIZE, raising=False)  # as in a new process: loading the definitions sets it
    with dg.DagsterInstance.from_config(str(home)) as local:
        assert execute_batch(instance=local).success
        frames = local.fetch_materializations(COMPANY_STOCK_PRICES, limit=1000).records

    processed = set(listed_files(batch)) - {sample.MISSING_COMPANY}
    assert {r.partition_key for r in frames} == processed
    assert sorted(c for g in groups for c in g) == sorted(processed)  # each company in one group
    assert sorted(w for w in writes if w) == sorted(groups)  # each group one write


def test_the_table_alone_loads_only_the_stored_frames_that_changed(stack, batch, instance) -> None:
    """What the table's own materialization (the UI's "Materialize" on it, or a backfill's run after the frames')
    does: the stored frames whose source is not the one the ledger holds, and nothing else."""
    job = defs().resolve_job_def("stock_batch_job")
    table = dg.AssetKey("historical_stocks_data")

    def table_only() -> list[str]:
        result = job.execute_in_process(instance=instance, asset_selection=[table])
        assert result.success
        return [
            c
            for m in result.asset_materializations_for_node("load_stock_batch")
            if m.asset_key == table
            for c in m.metadata["committed_companies"].value
        ]

    assert execute_batch(instance=instance).success
    before = table_digest(stack)
    # Nothing changed since the load, the companies with an empty file or a header only included.
    assert table_only() == []
    assert table_digest(stack) == before

    files = listed_files(batch)
    changed = sorted(c for c in files if c not in ("badr", "empt", "hdro"))[0]
    name = next(n for n in batch.files if n.split(".")[0] == changed)
    stack.put(f"Stocks/{name}", ("\n".join(files[changed].decode().splitlines()[:11]) + "\n").encode())
    frames_only = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("company_stock_prices")],
        run_config={"ops": {"load_stock_batch": {"config": {"companies": [changed]}}}},
    )
    assert frames_only.success and table_digest(stack) == before  # the frame is stored, the table not yet loaded
    assert table_only() == [changed]
    assert stack.query("SELECT count(*) FROM {t} WHERE company_name = %s", (changed,)) == [(10,)]


def test_the_company_list_is_recorded_from_the_listing_the_run_loads_from(stack, batch, instance, monkeypatch) -> None:
    """top_companies is part of the batch step: a batch run lists the bucket once and records the list from that
    listing; materialized alone, it reads the bucket and nothing else (no database)."""
    result = execute_batch(instance=instance)
    assert result.success
    [listed] = instance.fetch_materializations(dg.AssetKey("top_companies"), limit=10).records
    assert listed.run_id == result.run_id
    metadata = listed.asset_materialization.metadata
    loaded = instance.fetch_materializations(dg.AssetKey("company_stock_prices"), limit=1000).records
    assert metadata["companies_matched"].value == len({r.partition_key for r in loaded})
    assert metadata["missing"].value == [f"{sample.MISSING_COMPANY}.us.csv"]
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("top_companies"), "every_listed_company_has_a_file")]
    )
    assert [c.run_id for c in check.values()] == [result.run_id]

    monkeypatch.setenv("STOCK_PLATFORM_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # unreachable
    alone = (
        defs()
        .resolve_job_def("stock_batch_job")
        .execute_in_process(instance=instance, asset_selection=[dg.AssetKey("top_companies")])
    )
    assert alone.success
    [event] = alone.asset_materializations_for_node("load_stock_batch")
    assert event.asset_key == dg.AssetKey("top_companies")
    assert event.metadata["companies_matched"].value == metadata["companies_matched"].value
