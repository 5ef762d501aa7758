"""warehouse.py against a real PostgreSQL, without Dagster: loads, merges, versions, prune, export, findings."""

import datetime as dt

import psycopg
import pyarrow as pa
import pytest

from stock_platform.batch import warehouse
from stock_platform.batch.quality import CONSISTENT_OHLC, NON_NEGATIVE_VOLUME, ROWS_MATCH_LEDGER, UNIQUE_KEYS
from stock_platform.batch.schema import ARROW_SCHEMA, prepare_tables
from stock_platform.batch.summary import TableState
from stock_platform.resources.postgres import PostgresResource
from stock_platform_tests.frames import frame

pytestmark = pytest.mark.integration


@pytest.fixture
def target(stack) -> tuple[PostgresResource, warehouse.Target]:
    postgres = PostgresResource(url=stack.database_url, schema_name=stack.schema)
    prepare_tables(postgres.engine(), stack.schema, postgres.table)
    return postgres, warehouse.Target(stack.schema, postgres.table)


def test_copy_then_merge_counts_come_from_the_database(stack, target) -> None:
    postgres, t = target
    with postgres.connect() as conn:
        assert warehouse.table_state(conn, t) == TableState(0, 0, None, None, 0)  # an empty table, never loaded
        assert warehouse.table_version(conn, t) == 0
        first = warehouse.replace_companies(
            conn, t, {"aapl": frame("aapl", [10.5, 11.0]), "ge": frame("ge", [9.5])}, "r1"
        )
        assert (first.rows_inserted, first.rows_updated, first.rows_deleted, first.version) == (3, 0, 0, 1)
        # aapl: one value corrected, one date dropped, one added; ge untouched by this load.
        second = warehouse.replace_companies(conn, t, {"aapl": frame("aapl", [10.75], etag="e2", start=2)}, "r2")
        assert (second.rows_inserted, second.rows_updated, second.rows_deleted) == (0, 1, 1)
        assert second.companies == ("aapl",) and second.version == 2
        again = warehouse.replace_companies(conn, t, {"aapl": frame("aapl", [10.75], etag="e2", start=2)}, "r3")
        assert (again.rows_inserted, again.rows_updated, again.rows_unchanged, again.changed) == (0, 0, 1, False)
        assert warehouse.loaded_etags(conn, t) == {"aapl": "e2", "ge": "e1"}
        state = warehouse.table_state(conn, t)
        assert warehouse.table_version(conn, t) == 3
    assert state == TableState(rows=2, companies=2, min_date="2017-11-01", max_date="2017-11-02", version=3)
    assert stack.query("SELECT company_name, stock_date, close_value FROM {t} ORDER BY 1, 2") == [
        ("aapl", dt.date(2017, 11, 2), 10.75),
        ("ge", dt.date(2017, 11, 1), 9.5),
    ]


def test_a_failed_load_changes_neither_rows_nor_ledger_nor_version(stack, target) -> None:
    postgres, t = target
    with postgres.connect() as conn:
        warehouse.replace_companies(conn, t, {"aapl": frame("aapl", [10.5])}, "r1")
        bad = frame("msft", [10.5]).set_column(5, "volume_traded", pa.array([None], pa.int64()))
        bad = bad.replace_schema_metadata(frame("msft", [1.0]).schema.metadata)
        conn.execute(
            f'ALTER TABLE "{stack.schema}"."{t.table}" ADD CONSTRAINT has_volume CHECK (volume_traded IS NOT NULL)'
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            warehouse.replace_companies(conn, t, {"msft": bad, "ge": frame("ge", [1.0])}, "r2")
        assert warehouse.loaded_etags(conn, t) == {"aapl": "e1"}
        assert warehouse.table_state(conn, t).version == 1
    assert stack.query("SELECT count(*) FROM {t}") == [(1,)]


def test_prune_stale_export_and_findings(stack, target) -> None:
    postgres, t = target
    with postgres.connect() as conn:
        warehouse.replace_companies(conn, t, {c: frame(c, [10.5, 12.0]) for c in ("aapl", "ge", "msft")}, "r1")
        stale = warehouse.stale_companies(conn, t, ["aapl"])
        assert (stale.names, stale.rows) == (("ge", "msft"), 4)
        pruned = warehouse.prune(conn, t, stale.names, "r2")
        assert (pruned.pruned, pruned.rows_deleted, pruned.version) == (("ge", "msft"), 4, 2)
        assert warehouse.stale_companies(conn, t, ["aapl"]).names == ()

        with warehouse.csv_export(conn, t, header=False) as (exported, chunks):
            csv = b"".join(chunks)
        assert (exported.rows, exported.version) == (2, 2)
        assert csv.decode().splitlines()[0] == "2017-11-01,10,11,9,10.5,100,5,0.5,aapl"

        conn.execute(f'UPDATE "{stack.schema}"."{t.table}" SET low_value = 20, volume_traded = -1')
        findings = warehouse.quality_findings(conn, t, today=dt.date(2026, 11, 23)).findings
    assert findings[CONSISTENT_OHLC.name].count == 2 and findings[NON_NEGATIVE_VOLUME.name].count == 2
    assert findings[NON_NEGATIVE_VOLUME.name].samples == ["aapl 2017-11-01", "aapl 2017-11-02"]
    assert findings[UNIQUE_KEYS.name].passed and findings[ROWS_MATCH_LEDGER.name].passed


def test_findings_name_ledger_mismatches_and_count_duplicates_when_the_key_is_missing(stack, target) -> None:
    postgres, t = target
    today = dt.date(2026, 11, 23)
    data = f'"{stack.schema}"."{t.table}"'
    with postgres.connect() as conn:
        warehouse.replace_companies(conn, t, {c: frame(c, [10.5, 12.0, 11.0]) for c in ("aapl", "ge")}, "r1")
        findings = warehouse.quality_findings(conn, t, today=today).findings
        assert findings[UNIQUE_KEYS.name].passed
        assert findings[UNIQUE_KEYS.name].basis == "primary key (company_name, stock_date) enforced by PostgreSQL"
        assert findings[ROWS_MATCH_LEDGER.name].passed

        # Rows changed behind the ledger's back: one company short, one the ledger never loaded.
        conn.execute(f"DELETE FROM {data} WHERE company_name = 'ge' AND stock_date = '2017-11-02'")
    with postgres.connect() as conn:
        conn.execute(f"UPDATE {data} SET company_name = 'zz' WHERE company_name = 'ge' AND stock_date = '2017-11-03'")
        findings = warehouse.quality_findings(conn, t, today=today).findings
    assert findings[ROWS_MATCH_LEDGER.name].count == 2
    assert findings[ROWS_MATCH_LEDGER.name].samples == ["ge: ledger 3, table 1", "zz: ledger 0, table 1"]

    with postgres.connect() as conn:
        conn.execute(f"ALTER TABLE {data} DROP CONSTRAINT {t.table}_pkey")
        duplicates = f"SELECT * FROM {data} WHERE company_name = 'aapl' AND stock_date < '2017-11-03'"
        conn.execute(f"INSERT INTO {data} {duplicates}")
        findings = warehouse.quality_findings(conn, t, today=today).findings
    assert findings[UNIQUE_KEYS.name].count == 2
    assert findings[UNIQUE_KEYS.name].samples == ["aapl 2017-11-01", "aapl 2017-11-02"]
    assert findings[UNIQUE_KEYS.name].basis == "a scan of the table"


def test_rows_arrive_exactly_through_binary_copy_nulls_and_all(stack, target) -> None:
    """The load sends binary COPY (pgbinary.py): every value comes back bit for bit, NULLs where the frame has
    them, dates on both sides of PostgreSQL's 2000-01-01 epoch, in a first load (COPY into the table) and a
    reload (COPY into the stage, then merged)."""
    postgres, t = target
    rows = {
        "stock_date": [dt.date(1962, 1, 2), dt.date(1999, 12, 31), dt.date(2000, 1, 1), dt.date(2017, 11, 10)],
        "open_value": [0.0, 1e-300, None, 123456789.123456],
        "high_value": [0.1 + 0.2, 1.7976931348623157e308, None, 123456790.0],
        "low_value": [-0.0, 5e-324, 2.5, 1.0 / 3.0],
        "close_value": [0.3, None, 2.75, 2.0 / 3.0],
        "volume_traded": [0, 9_223_372_036_854_775_807, None, -1],
        "daily_percent_change": [None, 12.5, None, -99.99999999999999],
        "value_change": [0.3, None, None, -123456788.45678934],
        "company_name": ["brk-a_ü"] * 4,
    }
    first = warehouse.with_source(pa.table(rows, schema=ARROW_SCHEMA), "Stocks/brk-a_ü.us.txt", "e1")
    changed = dict(rows, close_value=[0.3, 4.0, 2.75, None])
    second = warehouse.with_source(pa.table(changed, schema=ARROW_SCHEMA), "Stocks/brk-a_ü.us.txt", "e2")
    columns = ", ".join(ARROW_SCHEMA.names)
    for loaded, expected in ((first, rows), (second, changed)):
        with postgres.connect() as conn:
            warehouse.replace_companies(conn, t, {"brk-a_ü": loaded}, "r")
        back = stack.query(f"SELECT {columns} FROM {{t}} ORDER BY stock_date")
        assert [dict(zip(ARROW_SCHEMA.names, row, strict=True)) for row in back] == pa.table(
            expected, schema=ARROW_SCHEMA
        ).to_pylist()
    # -0.0 == 0.0 in Python: its sign bit must have arrived too.
    assert stack.query("SELECT text(low_value) FROM {t} WHERE stock_date = '1962-01-02'") == [("-0",)]


def _key(stack) -> tuple:
    """The data table's primary key: name, definition, and the OID of its index (a rebuilt key has a new one)."""
    [key] = stack.query(
        "SELECT conname::text, pg_get_constraintdef(oid), conindid FROM pg_constraint "
        "WHERE conrelid = to_regclass(%s) AND contype = 'p'",
        (f'"{stack.schema}"."{stack.table}"',),
    )
    return key


def test_the_first_load_builds_the_key_once_and_keeps_its_name_and_definition(stack, target) -> None:
    postgres, t = target
    name, definition, index = _key(stack)
    with postgres.connect() as conn:
        first = warehouse.replace_companies(conn, t, {c: frame(c, [10.5, 11.0]) for c in ("aapl", "ge")}, "r1")
    assert first.rows_inserted == 4
    rebuilt = _key(stack)
    assert rebuilt[:2] == (name, definition) and rebuilt[2] != index  # built from the loaded rows
    with pytest.raises(psycopg.errors.UniqueViolation), stack.connect() as conn:
        conn.execute("INSERT INTO {t} SELECT * FROM {t} LIMIT 1".format(t=f'"{stack.schema}"."{t.table}"'))
    # A table with rows keeps its key (and its readers) while new companies are COPYed in.
    with postgres.connect() as conn:
        warehouse.replace_companies(conn, t, {"msft": frame("msft", [10.5])}, "r2")
    assert _key(stack) == rebuilt
    assert stack.query("SELECT count(*) FROM {t}") == [(5,)]


def test_a_failed_first_load_leaves_the_table_empty_with_its_key(stack, target) -> None:
    postgres, t = target
    key = _key(stack)
    twice = pa.concat_tables([frame("aapl", [10.5]), frame("aapl", [10.5])])  # one key twice: the key refuses it
    with postgres.connect() as conn, pytest.raises(psycopg.errors.UniqueViolation):
        warehouse.replace_companies(conn, t, {"aapl": twice, "ge": frame("ge", [1.0])}, "r1")
    assert _key(stack) == key
    assert stack.query("SELECT count(*) FROM {t}") == [(0,)]
    with postgres.connect() as conn:
        assert warehouse.loaded_etags(conn, t) == {} and warehouse.table_version(conn, t) == 0


def test_the_first_load_keeps_the_key_when_a_reader_holds_the_table(stack, target, monkeypatch) -> None:
    postgres, t = target
    monkeypatch.setattr(warehouse, "EMPTY_TABLE_LOCK_TIMEOUT", "100ms")
    key = _key(stack)
    # An open transaction that read the table holds it until it ends.
    with stack.connect() as reader, reader.transaction():
        reader.execute("SELECT count(*) FROM {t}".format(t=f'"{stack.schema}"."{t.table}"'))
        with postgres.connect() as conn:
            commit = warehouse.replace_companies(conn, t, {"aapl": frame("aapl", [10.5, 11.0])}, "r1")
    assert commit.rows_inserted == 2 and _key(stack) == key  # loaded with the key in place, without waiting
    with postgres.connect() as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)  # the session's own setting, unchanged


def test_the_first_load_keeps_a_key_another_table_refers_to(stack, target) -> None:
    postgres, t = target
    data = f'"{stack.schema}"."{t.table}"'
    with stack.connect() as conn:
        conn.execute(
            f'CREATE TABLE "{stack.schema}".notes (company_name text, stock_date date, '
            f"FOREIGN KEY (company_name, stock_date) REFERENCES {data})"
        )
    key = _key(stack)
    with postgres.connect() as conn:
        commit = warehouse.replace_companies(conn, t, {"aapl": frame("aapl", [10.5])}, "r1")
    assert commit.rows_inserted == 1 and _key(stack) == key


SERIES = "COPY (SELECT x, repeat('v', x % 7) FROM generate_series(1, 5000) AS x) TO STDOUT (FORMAT csv)"


def psycopg_copy(conn: psycopg.Connection, statement: str) -> bytes:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        return b"".join(bytes(row) for row in copy)


def test_copy_out_reads_what_psycopg_reads_in_blocks(stack) -> None:
    with stack.connect() as conn:
        expected = psycopg_copy(conn, SERIES)
        with warehouse.copy_out(conn, psycopg.sql.SQL(SERIES), size=4096) as out:
            blocks = list(out)
        assert b"".join(blocks) == expected and len(expected) > 40_000
        assert all(len(b) >= 4096 for b in blocks[:-1]) and all(type(b) is bytes for b in blocks)
        assert conn.execute("SELECT 42").fetchone() == (42,)  # the connection is ready for the next statement


def test_copy_out_left_early_leaves_the_connection_usable(stack) -> None:
    with stack.connect() as conn:
        with conn.transaction():
            with warehouse.copy_out(conn, psycopg.sql.SQL(SERIES), size=4096) as out:
                first = next(out)  # the reader stops here: the rest is read on leaving the block
            assert first.startswith(b"1,v\n")
            assert conn.execute("SELECT 7").fetchone() == (7,)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # committed


def test_copy_out_raises_what_postgresql_reports_mid_copy(stack) -> None:
    failing = "COPY (SELECT 1 / (5000 - x) FROM generate_series(1, 5000) AS x) TO STDOUT"  # the last row divides by 0
    with stack.connect() as conn:
        with (
            pytest.raises(psycopg.DatabaseError, match="division by zero"),
            warehouse.copy_out(conn, psycopg.sql.SQL(failing), size=1 << 20) as out,
        ):
            list(out)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_checks_count_the_table_state_in_their_scan_and_a_known_state_holds_until_the_version_moves(
    stack, target
) -> None:
    postgres, t = target
    today = dt.date(2026, 11, 23)
    with postgres.connect() as conn:
        assert warehouse.quality_findings(conn, t, today=today).state == TableState(0, 0, None, None, 0)
        frames = {"aapl": frame("aapl", [10.5, 11.0], start=3), "ge": frame("ge", [9.5, 9.0, 9.25], start=1)}
        warehouse.replace_companies(conn, t, frames, "r1")
        counted = warehouse.quality_findings(conn, t, today=today).state
        assert counted == warehouse.table_state(conn, t) == TableState(5, 2, "2017-11-01", "2017-11-04", 1)

        # At the same version, a known state is the state: the table is not counted again (a made-up count shows
        # which was returned), by the summary's read and by the extract's.
        known = TableState(99, 7, "1999-01-01", "1999-12-31", counted.version)
        assert warehouse.table_state(conn, t, known) == known
        with warehouse.csv_export(conn, t, known=known) as (exported, chunks):
            assert exported == known and len(b"".join(chunks).splitlines()) == 5

        # Once a load moves the version, the known state is stale, and both count the table.
        warehouse.replace_companies(conn, t, {"msft": frame("msft", [20.0])}, "r2")
        assert warehouse.table_state(conn, t, known) == TableState(6, 3, "2017-11-01", "2017-11-04", 2)
        with warehouse.csv_export(conn, t, known=known) as (exported, chunks):
            assert exported == TableState(6, 3, "2017-11-01", "2017-11-04", 2)
            assert len(b"".join(chunks).splitlines()) == 6
