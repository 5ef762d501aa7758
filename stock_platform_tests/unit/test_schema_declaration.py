"""The one declaration of the tables, and the pure comparison of a reflected table against it (no database)."""

from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine.interfaces import ReflectedColumn

from stock_platform.batch.schema import (
    ARROW_SCHEMA,
    COLUMN_NAMES,
    KEY_COLUMNS,
    TABLE_COLUMNS,
    LegacyTableError,
    SchemaError,
    SchemaMismatchError,
    compare_table,
    create_table_sql,
    declare_tables,
    is_legacy_table,
    ledger_table_name,
    pg_type_name,
    state_table_name,
)

DECLARED = declare_tables("s", "historical_stocks_data")


def column(
    name: str, type_: sa.types.TypeEngine[Any], nullable: bool = True, default: str | None = None
) -> ReflectedColumn:
    return ReflectedColumn(name=name, type=type_, nullable=nullable, default=default)


def reflected(table: sa.Table, **changes: dict[str, Any]) -> list[ReflectedColumn]:
    """The table as the inspector would reflect it when it matches, with `changes` applied per column name."""
    return [
        column(
            c.name,
            changes.get(c.name, {}).get("type", c.type),
            bool(changes.get(c.name, {}).get("nullable", c.nullable)),
        )
        for c in table.columns
    ]


def legacy_columns(length: int | None = 56) -> list[ReflectedColumn]:
    return [column(n, sa.VARCHAR(length)) for n in COLUMN_NAMES]


def test_the_data_table_is_declared_from_the_column_list() -> None:
    data = DECLARED.data
    assert tuple(data.columns.keys()) == COLUMN_NAMES == tuple(ARROW_SCHEMA.names)
    assert tuple(data.primary_key.columns.keys()) == KEY_COLUMNS
    assert {c.name: pg_type_name(c.type) for c in data.columns} == {
        "stock_date": "date",
        "open_value": "double precision",
        "high_value": "double precision",
        "low_value": "double precision",
        "close_value": "double precision",
        "volume_traded": "bigint",
        "daily_percent_change": "double precision",
        "value_change": "double precision",
        "company_name": "text",
    }
    assert [c.name for c in data.columns if not c.nullable] == ["stock_date", "company_name"]
    assert all(c.comment for c in data.columns)
    # The Arrow and SQL types of each column agree.
    arrow_for_sql = {"date": pa.date32(), "double precision": pa.float64(), "bigint": pa.int64(), "text": pa.string()}
    assert all(arrow_for_sql[c.pg_type] == c.arrow_type for c in TABLE_COLUMNS)


def test_companion_tables_follow_the_configured_names() -> None:
    tables = declare_tables("analytics", "prices")
    assert tables.schema == "analytics"
    assert [t.fullname for t in tables.platform] == [
        "analytics.prices",
        "analytics.prices_loads",
        "analytics.prices_state",
    ]
    assert tables.ledger.name == ledger_table_name("prices") and tables.state.name == state_table_name("prices")
    assert tables.migration_rejects.fullname == "analytics.prices_migration_rejects"
    state = {c.name: (pg_type_name(c.type), c.nullable) for c in tables.state.columns}
    assert state == {
        "singleton": ("boolean", False),
        "version": ("bigint", False),
        "committed_at": ("timestamp with time zone", False),
        "run_id": ("text", True),
    }
    assert tuple(tables.state.primary_key.columns.keys()) == ("singleton",)


@pytest.mark.parametrize(("schema", "table"), [("bad schema", "t"), ("s", 'x"; drop table y; --'), ("s", "a" * 64)])
def test_identifiers_are_validated(schema: str, table: str) -> None:
    with pytest.raises(ValueError, match="not a valid identifier"):
        declare_tables(schema, table)


def test_create_table_sql_compiles_the_declaration() -> None:
    statements = create_table_sql("s", "historical_stocks_data")
    assert statements[0] == "CREATE SCHEMA IF NOT EXISTS s"
    data = statements[1]
    assert data.startswith("CREATE TABLE IF NOT EXISTS s.historical_stocks_data (")
    assert "close_value DOUBLE PRECISION," in data and "volume_traded BIGINT," in data
    assert "stock_date DATE NOT NULL," in data and "company_name TEXT NOT NULL," in data
    assert "PRIMARY KEY (company_name, stock_date)" in data
    assert statements[2].startswith("CREATE TABLE IF NOT EXISTS s.historical_stocks_data_loads (")
    assert statements[3].startswith("CREATE TABLE IF NOT EXISTS s.historical_stocks_data_state (")
    assert "CHECK (singleton)" in statements[3]


@pytest.mark.parametrize(
    ("type_", "name"),
    [
        (postgresql.DOUBLE_PRECISION(), "double precision"),
        (postgresql.DOUBLE_PRECISION(precision=53), "double precision"),
        (sa.Double(), "double precision"),
        (sa.Float(), "double precision"),
        (sa.Float(53), "double precision"),
        (sa.Float(24), "real"),
        (sa.REAL(), "real"),
        (sa.Numeric(6, 1), "numeric(6,1)"),
        (sa.Numeric(), "numeric"),
        (sa.BIGINT(), "bigint"),
        (sa.BigInteger(), "bigint"),
        (sa.Integer(), "integer"),
        (sa.SmallInteger(), "smallint"),
        (sa.TEXT(), "text"),
        (sa.Text(), "text"),
        (sa.String(), "character varying"),
        (sa.VARCHAR(56), "character varying(56)"),
        (sa.CHAR(3), "character(3)"),
        (sa.Date(), "date"),
        (sa.DateTime(), "timestamp without time zone"),
        (postgresql.TIMESTAMP(timezone=True), "timestamp with time zone"),
        (postgresql.TIMESTAMP(timezone=True, precision=3), "timestamp(3) with time zone"),
        (sa.Boolean(), "boolean"),
        (postgresql.UUID(), "uuid"),
    ],
)
def test_types_are_named_as_postgresql_names_them(type_: sa.types.TypeEngine[Any], name: str) -> None:
    assert pg_type_name(type_) == name


def test_a_matching_table_has_no_differences() -> None:
    for table in DECLARED.platform:
        assert compare_table(table, reflected(table), list(table.primary_key.columns.keys())).differences == ()


@pytest.mark.parametrize(
    "equivalent",
    [
        {"close_value": {"type": sa.Float(53)}},
        {"close_value": {"type": sa.Double()}},
        {"company_name": {"type": sa.String()}},  # unbounded varchar stores like text
        {"volume_traded": {"type": sa.BIGINT()}},
        {"stock_date": {"type": sa.DATE()}},
    ],
)
def test_types_compare_by_meaning(equivalent: dict[str, dict[str, Any]]) -> None:
    data = DECLARED.data
    assert compare_table(data, reflected(data, **equivalent), KEY_COLUMNS).differences == ()


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (
            {"close_value": {"type": sa.Numeric(6, 1)}},
            "column close_value: expected double precision, found numeric(6,1)",
        ),
        ({"open_value": {"type": sa.REAL()}}, "column open_value: expected double precision, found real"),
        ({"volume_traded": {"type": sa.Integer()}}, "column volume_traded: expected bigint, found integer"),
        ({"company_name": {"type": sa.VARCHAR(10)}}, "column company_name: expected text, found character varying(10)"),
        (
            {"stock_date": {"type": sa.DateTime()}},
            "column stock_date: expected date, found timestamp without time zone",
        ),
        ({"value_change": {"nullable": False}}, "column value_change: expected nullable, found NOT NULL"),
        ({"company_name": {"nullable": True}}, "column company_name: expected NOT NULL, found nullable"),
    ],
)
def test_each_difference_is_named_expected_vs_found(change: dict[str, dict[str, Any]], difference: str) -> None:
    data = DECLARED.data
    assert compare_table(data, reflected(data, **change), KEY_COLUMNS).differences == (difference,)


def test_missing_extra_and_key_differences_are_all_listed() -> None:
    data = DECLARED.data
    columns = [c for c in reflected(data) if c["name"] != "high_value"]
    columns.append(column("note", sa.Text()))
    columns.append(column("loaded_by", sa.Text(), nullable=False, default="CURRENT_USER"))
    columns.append(column("batch", sa.Integer(), nullable=False))
    comparison = compare_table(data, columns, ["stock_date"])
    assert comparison.differences == (
        "column high_value: missing (expected double precision)",
        "column batch: not declared (integer) and NOT NULL without a default: loads could not insert a row",
        "primary key: expected (company_name, stock_date), found (stock_date)",
    )
    assert comparison.tolerated == (
        "column note: not declared (text), tolerated: loads leave it NULL or at its default",
        "column loaded_by: not declared (text), tolerated: loads leave it NULL or at its default",
    )
    assert compare_table(data, reflected(data), []).differences == (
        "primary key: expected (company_name, stock_date), found none",
    )
    assert compare_table(data, reflected(data), ["stock_date", "company_name"]).differences == (
        "primary key: expected (company_name, stock_date), found (stock_date, company_name)",
    )


def test_the_legacy_table_is_recognised_and_nothing_else_is() -> None:
    assert is_legacy_table(legacy_columns(), [])
    assert is_legacy_table(legacy_columns(None), [])
    assert is_legacy_table([column(n, sa.TEXT()) for n in COLUMN_NAMES], [])
    assert not is_legacy_table(legacy_columns(), ["company_name", "stock_date"])
    assert not is_legacy_table(legacy_columns()[:-1], [])
    assert not is_legacy_table(list(reversed(legacy_columns())), [])
    assert not is_legacy_table(reflected(DECLARED.data), [])
    typed_one = legacy_columns()
    typed_one[1] = column(COLUMN_NAMES[1], postgresql.DOUBLE_PRECISION())
    assert not is_legacy_table(typed_one, [])


def test_errors_name_the_tables_and_the_command_but_no_connection_details() -> None:
    mismatch = SchemaMismatchError("s", {"historical_stocks_data": ("column close_value: expected a, found b",)})
    assert isinstance(mismatch, SchemaError)
    assert '"s"."historical_stocks_data": column close_value: expected a, found b' in str(mismatch)
    assert "nothing was written" in str(mismatch)
    legacy = LegacyTableError("s", "historical_stocks_data")
    assert isinstance(legacy, SchemaError)
    assert "stock-platform migrate-legacy --schema s --table historical_stocks_data" in str(legacy)
    assert "docs/migration.md" in str(legacy)
