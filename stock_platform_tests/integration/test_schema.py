"""prepare_tables on a real PostgreSQL: creates what is missing, verifies what exists, refuses drifted and legacy
tables before any write, and is safe when several processes call it at once."""

import threading
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from stock_platform.batch.schema import (
    COLUMN_NAMES,
    LegacyTableError,
    SchemaMismatchError,
    create_table_sql,
    prepare_tables,
    prepare_tables_in,
)
from stock_platform.resources.postgres import PostgresResource
from stock_platform_tests.conftest import Stack

pytestmark = pytest.mark.integration

TABLE = "historical_stocks_data"
LEGACY_DDL = "CREATE TABLE historical_stocks_data (" + ", ".join(f"{name} VARCHAR(56)" for name in COLUMN_NAMES) + ")"


@pytest.fixture
def engine(stack: Stack) -> Iterator[sa.Engine]:
    engine = PostgresResource(url=stack.database_url).engine()
    yield engine
    engine.dispose()


def columns_of(stack: Stack, table: str) -> dict[str, tuple[str, bool]]:
    rows = stack.query(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (f'"{stack.schema}"."{table}"',),
    )
    return {name: (type_, not_null) for name, type_, not_null in rows}


def execute(stack: Stack, statement: str) -> None:
    """Run one statement that returns no rows; {t} is the data table, {s} the test's schema."""
    with stack.connect() as conn:
        conn.execute(statement.format(t=f'"{stack.schema}"."{TABLE}"', s=f'"{stack.schema}"'))


def tables_in(stack: Stack) -> set[str]:
    return {r[0] for r in stack.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", (stack.schema,))}


def test_creates_the_tables_as_declared_with_a_state_row(stack: Stack, engine: sa.Engine) -> None:
    prepared = prepare_tables(engine, stack.schema, TABLE)
    assert prepared.created == (TABLE, f"{TABLE}_loads", f"{TABLE}_state")
    assert columns_of(stack, TABLE) == {
        "stock_date": ("date", True),
        "open_value": ("double precision", False),
        "high_value": ("double precision", False),
        "low_value": ("double precision", False),
        "close_value": ("double precision", False),
        "volume_traded": ("bigint", False),
        "daily_percent_change": ("double precision", False),
        "value_change": ("double precision", False),
        "company_name": ("text", True),
    }
    assert stack.query(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
        (f'"{stack.schema}"."{TABLE}"',),
    ) == [("PRIMARY KEY (company_name, stock_date)",)]
    assert columns_of(stack, f"{TABLE}_state") == {
        "singleton": ("boolean", True),
        "version": ("bigint", True),
        "committed_at": ("timestamp with time zone", True),
        "run_id": ("text", False),
    }
    assert stack.query(f'SELECT singleton, version, run_id FROM "{stack.schema}"."{TABLE}_state"') == [(True, 0, None)]
    comment = stack.query("SELECT col_description(%s::regclass, 9)", (f'"{stack.schema}"."{TABLE}"',))[0][0]
    assert "lower-cased" in comment
    with pytest.raises(psycopg.errors.CheckViolation):
        execute(stack, f"INSERT INTO {{s}}.{TABLE}_state VALUES (false, 1, now(), null)")


def test_is_idempotent_and_keeps_the_committed_version(stack: Stack, engine: sa.Engine) -> None:
    prepare_tables(engine, stack.schema, TABLE)
    execute(stack, f"UPDATE {{s}}.{TABLE}_state SET version = 7, run_id = 'r'")
    again = prepare_tables(engine, stack.schema, TABLE)
    assert again.created == () and again.tolerated == ()
    assert stack.query(f'SELECT version, run_id FROM "{stack.schema}"."{TABLE}_state"') == [(7, "r")]


def test_creates_a_missing_schema_and_a_configured_table_name(stack: Stack, engine: sa.Engine) -> None:
    schema = f"{stack.schema}_new"
    try:
        prepare_tables(engine, schema, "prices")
        assert {r[0] for r in stack.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))} == {
            "prices",
            "prices_loads",
            "prices_state",
        }
    finally:
        execute(stack, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_tables_from_the_old_ddl_wrapper_pass_verification(stack: Stack, engine: sa.Engine) -> None:
    with stack.connect() as conn:
        for statement in create_table_sql(stack.schema, TABLE):
            conn.execute(statement.encode())
    assert prepare_tables(engine, stack.schema, TABLE).created == ()


@pytest.mark.parametrize(
    ("alter", "difference"),
    [
        # The reported defect: a run stored 10.6 for 10.55 after this.
        (
            "ALTER TABLE {t} ALTER COLUMN close_value TYPE numeric(6,1)",
            "column close_value: expected double precision, found numeric(6,1)",
        ),
        (
            "ALTER TABLE {t} ALTER COLUMN open_value TYPE real",
            "column open_value: expected double precision, found real",
        ),
        (
            "ALTER TABLE {t} ALTER COLUMN volume_traded TYPE integer",
            "column volume_traded: expected bigint, found integer",
        ),
        (
            "ALTER TABLE {t} ALTER COLUMN company_name TYPE varchar(10)",
            "column company_name: expected text, found character varying(10)",
        ),
        (
            "ALTER TABLE {t} ALTER COLUMN stock_date TYPE timestamp",
            "column stock_date: expected date, found timestamp without time zone",
        ),
        (
            "ALTER TABLE {t} ALTER COLUMN value_change SET NOT NULL",
            "column value_change: expected nullable, found NOT NULL",
        ),
        ("ALTER TABLE {t} DROP COLUMN high_value", "column high_value: missing (expected double precision)"),
        (
            "ALTER TABLE {t} ADD COLUMN batch integer NOT NULL",
            "column batch: not declared (integer) and NOT NULL without a default: loads could not insert a row",
        ),
        (
            "ALTER TABLE {t} DROP CONSTRAINT historical_stocks_data_pkey",
            "primary key: expected (company_name, stock_date), found none",
        ),
        (
            "ALTER TABLE {t} DROP CONSTRAINT historical_stocks_data_pkey, ADD PRIMARY KEY (stock_date, company_name)",
            "primary key: expected (company_name, stock_date), found (stock_date, company_name)",
        ),
    ],
)
def test_drift_fails_before_any_write_naming_the_difference(
    stack: Stack, engine: sa.Engine, alter: str, difference: str
) -> None:
    prepare_tables(engine, stack.schema, TABLE)
    execute(stack, f"DROP TABLE {{s}}.{TABLE}_loads")
    execute(stack, alter)
    with pytest.raises(SchemaMismatchError) as raised:
        prepare_tables(engine, stack.schema, TABLE)
    assert f'"{stack.schema}"."{TABLE}": {difference}' in str(raised.value)
    assert raised.value.differences == {TABLE: (difference,)}
    # Nothing was written: the dropped ledger was not re-created.
    assert f"{TABLE}_loads" not in tables_in(stack)


def test_every_difference_of_every_table_is_listed_and_no_connection_detail(stack: Stack, engine: sa.Engine) -> None:
    prepare_tables(engine, stack.schema, TABLE)
    execute(
        stack,
        "ALTER TABLE {t} ALTER COLUMN close_value TYPE numeric(6,1), ALTER COLUMN volume_traded TYPE integer, "
        "DROP CONSTRAINT historical_stocks_data_pkey, ALTER COLUMN company_name DROP NOT NULL",
    )
    execute(stack, f"ALTER TABLE {{s}}.{TABLE}_loads ALTER COLUMN row_count TYPE integer")
    with pytest.raises(SchemaMismatchError) as raised:
        prepare_tables(engine, stack.schema, TABLE)
    assert raised.value.differences == {
        TABLE: (
            "column close_value: expected double precision, found numeric(6,1)",
            "column volume_traded: expected bigint, found integer",
            "column company_name: expected NOT NULL, found nullable",
            "primary key: expected (company_name, stock_date), found none",
        ),
        f"{TABLE}_loads": ("column row_count: expected bigint, found integer",),
    }
    message = str(raised.value)
    assert "postgresql" not in message and "@" not in message
    if engine.url.host:
        assert engine.url.host not in message


def test_a_nullable_extra_column_is_tolerated_and_reported(stack: Stack, engine: sa.Engine) -> None:
    prepare_tables(engine, stack.schema, TABLE)
    execute(stack, "ALTER TABLE {t} ADD COLUMN note text, ADD COLUMN loaded_by text NOT NULL DEFAULT current_user")
    prepared = prepare_tables(engine, stack.schema, TABLE)
    tolerated = "tolerated: loads leave it NULL or at its default"
    assert prepared.tolerated == (
        f'"{stack.schema}"."{TABLE}": column note: not declared (text), {tolerated}',
        f'"{stack.schema}"."{TABLE}": column loaded_by: not declared (text), {tolerated}',
    )


def test_a_view_in_place_of_a_table_is_refused(stack: Stack, engine: sa.Engine) -> None:
    execute(stack, f"CREATE VIEW {{s}}.{TABLE}_state AS SELECT 1 AS version")
    with pytest.raises(SchemaMismatchError, match="is a view, not a table"):
        prepare_tables(engine, stack.schema, TABLE)


def test_the_legacy_table_is_refused_with_the_migration_command(stack: Stack, engine: sa.Engine) -> None:
    with stack.connect() as conn:
        conn.execute(f'SET search_path TO "{stack.schema}"')
        conn.execute(LEGACY_DDL)
        conn.execute("INSERT INTO historical_stocks_data VALUES ('2017-11-10','1','1','1','1','1','0','0','aapl')")
    with pytest.raises(LegacyTableError) as raised:
        prepare_tables(engine, stack.schema, TABLE)
    assert f"stock-platform migrate-legacy --schema {stack.schema} --table {TABLE}" in str(raised.value)
    assert "docs/migration.md" in str(raised.value)
    assert tables_in(stack) == {TABLE}  # no ledger or state table next to it


def test_runs_inside_the_callers_transaction(stack: Stack, engine: sa.Engine) -> None:
    with engine.connect() as connection, connection.begin() as transaction:
        prepare_tables_in(connection, stack.schema, TABLE)
        transaction.rollback()
    assert tables_in(stack) == set()


def test_concurrent_callers_create_everything_once(stack: Stack, engine: sa.Engine) -> None:
    schema = f"{stack.schema}_race"
    callers = 6
    barrier = threading.Barrier(callers)
    results: list[tuple[str, ...] | Exception] = []

    def prepare() -> None:
        barrier.wait()
        try:
            results.append(prepare_tables(engine, schema, TABLE).created)
        except Exception as error:  # noqa: BLE001 - collected and asserted on below
            results.append(error)

    try:
        threads = [threading.Thread(target=prepare) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        created = [r for r in results if isinstance(r, tuple)]
        assert len(created) == callers, results
        assert sorted(created, key=len) == [()] * (callers - 1) + [(TABLE, f"{TABLE}_loads", f"{TABLE}_state")]
        assert stack.query(f'SELECT version FROM "{schema}"."{TABLE}_state"') == [(0,)]
    finally:
        execute(stack, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
