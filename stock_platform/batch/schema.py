"""The one declaration of the tables: columns, their Arrow and PostgreSQL types, keys, DDL, and the check of a
database's tables against them.

Everything that writes or reads `historical_stocks_data` (the transform, the Parquet frames, the COPY, the Output
CSV) takes its column order from `TABLE_COLUMNS`; the SQLAlchemy Core tables built by `declare_tables` come from
the same list, and they are both what `prepare_tables` creates and what it verifies an existing database against.
So the Arrow schema, the DDL and the verification can never drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.schema import CreateSchema, CreateTable
from sqlalchemy.types import TypeEngine


@dataclass(frozen=True)
class Column:
    name: str
    arrow_type: pa.DataType
    sql_type: TypeEngine[Any]
    description: str
    nullable: bool = True

    @property
    def pg_type(self) -> str:
        return pg_type_name(self.sql_type)


TABLE_COLUMNS: tuple[Column, ...] = (
    Column("stock_date", pa.date32(), sa.Date(), "Trading day (from the file's Date column).", nullable=False),
    Column("open_value", pa.float64(), postgresql.DOUBLE_PRECISION(), "Opening price."),
    Column("high_value", pa.float64(), postgresql.DOUBLE_PRECISION(), "Highest price of the day."),
    Column("low_value", pa.float64(), postgresql.DOUBLE_PRECISION(), "Lowest price of the day."),
    Column("close_value", pa.float64(), postgresql.DOUBLE_PRECISION(), "Closing price."),
    Column("volume_traded", pa.int64(), sa.BigInteger(), "Shares traded."),
    Column(
        "daily_percent_change",
        pa.float64(),
        postgresql.DOUBLE_PRECISION(),
        "(close - open) / open * 100; NULL when open is 0.",
    ),
    Column("value_change", pa.float64(), postgresql.DOUBLE_PRECISION(), "close - open."),
    Column(
        "company_name",
        pa.string(),
        sa.Text(),
        "File name before the first dot, lower-cased (e.g. aapl): company identity is case-insensitive.",
        nullable=False,
    ),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in TABLE_COLUMNS)
KEY_COLUMNS: tuple[str, ...] = ("company_name", "stock_date")
ARROW_SCHEMA: pa.Schema = pa.schema([pa.field(c.name, c.arrow_type) for c in TABLE_COLUMNS])

# The input contract: header names (matched case-insensitively) the parser requires; OpenInt and any other
# column are read past.
REQUIRED_INPUT_COLUMNS: tuple[str, ...] = ("date", "open", "high", "low", "close", "volume")

# What a rejected row looks like in s3://<source>/Rejected/<run id>/<company>.csv: the reason, then the
# fields exactly as they were read (so nothing is lost), and the raw text of a line that could not be split.
REJECT_COLUMNS: tuple[str, ...] = ("reason", *REQUIRED_INPUT_COLUMNS, "raw_line")
REJECT_SCHEMA: pa.Schema = pa.schema([pa.field(n, pa.string()) for n in REJECT_COLUMNS])

# Unquoted identifiers we accept for the configurable schema and table names. Anything else is refused
# up front rather than quoted into something surprising.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

MIGRATE_LEGACY_COMMAND = "stock-platform migrate-legacy"


def validate_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"{what} {name!r} is not a valid identifier: use letters, digits and underscores, "
            "starting with a letter or underscore, at most 63 characters"
        )
    return name


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified_name(schema: str, table: str) -> str:
    return f"{quote_ident(validate_identifier(schema, 'schema'))}.{quote_ident(validate_identifier(table, 'table'))}"


def ledger_table_name(table: str) -> str:
    return validate_identifier(f"{table}_loads", "ledger table")


def state_table_name(table: str) -> str:
    return validate_identifier(f"{table}_state", "state table")


def migration_rejects_table_name(table: str) -> str:
    return validate_identifier(f"{table}_migration_rejects", "migration rejects table")


@dataclass(frozen=True)
class Tables:
    """The platform's tables in one schema, declared for one (configurable) data table name."""

    schema: str
    metadata: sa.MetaData
    data: sa.Table
    ledger: sa.Table
    state: sa.Table
    migration_rejects: sa.Table  # written only by the legacy migration, never created by prepare_tables

    @property
    def platform(self) -> tuple[sa.Table, ...]:
        """The tables every load needs, in creation order."""
        return (self.data, self.ledger, self.state)


def declare_tables(schema: str, table: str) -> Tables:
    """The SQLAlchemy Core declaration of every table for `schema`.`table`: what is created and what is verified."""
    validate_identifier(schema, "schema")
    validate_identifier(table, "table")
    metadata = sa.MetaData(schema=schema)
    data = sa.Table(
        table,
        metadata,
        *(sa.Column(c.name, c.sql_type, nullable=c.nullable, comment=c.description) for c in TABLE_COLUMNS),
        sa.PrimaryKeyConstraint(*KEY_COLUMNS),
        comment="Daily stock prices, one row per company and trading day (stock_platform).",
    )
    # One row per company: which S3 object (and ETag) its rows in the table came from. It is written in the same
    # transaction as the rows, so it can never disagree with them.
    ledger = sa.Table(
        ledger_table_name(table),
        metadata,
        sa.Column("company_name", sa.Text(), primary_key=True),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("source_etag", sa.Text(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("min_date", sa.Date()),
        sa.Column("max_date", sa.Date()),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("loaded_at", postgresql.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
        comment=f"Where each company's rows in {table} came from (stock_platform).",
    )
    # One row, bumped by every transaction that changes the data table: the Output CSV records the version it was
    # exported at, so whether it is current is read from committed state.
    state = sa.Table(
        state_table_name(table),
        metadata,
        sa.Column("singleton", sa.Boolean(), primary_key=True, server_default=sa.true()),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("committed_at", postgresql.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("run_id", sa.Text()),
        sa.CheckConstraint("singleton"),
        comment=f"The committed version of {table} (stock_platform).",
    )
    migration_rejects = sa.Table(
        migration_rejects_table_name(table),
        metadata,
        sa.Column("legacy_row", sa.BigInteger(), primary_key=True, comment="Position in the legacy table (1 = first)."),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("kept_row", sa.BigInteger(), comment="For a conflicting duplicate: the legacy_row that was kept."),
        *(sa.Column(c.name, sa.Text(), comment="The legacy value, as stored.") for c in TABLE_COLUMNS),
        sa.Column("migrated_at", postgresql.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
        comment=f"Rows of the legacy {table} that the migration did not keep, with the reason.",
    )
    return Tables(schema, metadata, data, ledger, state, migration_rejects)


def create_table_sql(schema: str, table: str) -> list[str]:
    """DDL for the schema, the data table, its ledger and its state table, idempotent (compiled from the declaration).

    Kept for callers that still run plain DDL; `prepare_tables` also verifies existing tables and should be used
    instead.
    """
    tables = declare_tables(schema, table)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    statements: list[sa.schema.ExecutableDDLElement] = [CreateSchema(schema, if_not_exists=True)]
    statements += [CreateTable(t, if_not_exists=True) for t in tables.platform]
    return [str(s.compile(dialect=dialect)).strip() for s in statements]


def pg_type_name(type_: TypeEngine[Any]) -> str:
    """A type as PostgreSQL spells it (`format_type`): `double precision`, `numeric(6,1)`, `character varying(56)`.

    Declared and reflected types are compared through this spelling, so different SQLAlchemy spellings of one
    PostgreSQL type (DOUBLE_PRECISION, Double, Float(53)) compare equal, and the messages use the names a DBA sees.
    """
    for kind, spell in _SPELLINGS:
        if isinstance(type_, kind):
            return spell(type_)
    return str(type_.compile(dialect=postgresql.dialect())).lower()  # type: ignore[no-untyped-call]


def _float(type_: Any) -> str:
    # FLOAT(p) is real up to 24 binary digits of precision and double precision beyond, as in PostgreSQL.
    return "real" if type_.precision is not None and type_.precision <= 24 else "double precision"


def _numeric(type_: Any) -> str:
    return "numeric" if type_.precision is None else f"numeric({type_.precision},{type_.scale or 0})"


def _varchar(type_: Any) -> str:
    return "character varying" if type_.length is None else f"character varying({type_.length})"


def _temporal(type_: Any) -> str:
    kind = "timestamp" if isinstance(type_, sa.DateTime) else "time"
    precision = getattr(type_, "precision", None)
    zone = "with time zone" if type_.timezone else "without time zone"
    return f"{kind}({precision}) {zone}" if precision is not None else f"{kind} {zone}"


# Most specific classes first: DOUBLE_PRECISION and REAL are Floats, BIGINT is an Integer, TEXT, CHAR and Enum
# are Strings.
_SPELLINGS: tuple[tuple[type[Any] | tuple[type[Any], ...], Callable[[Any], str]], ...] = (
    (sa.REAL, lambda _: "real"),
    (sa.Double, lambda _: "double precision"),
    (sa.Float, _float),
    (sa.Numeric, _numeric),
    (sa.BigInteger, lambda _: "bigint"),
    (sa.SmallInteger, lambda _: "smallint"),
    (sa.Integer, lambda _: "integer"),
    (sa.Enum, lambda t: str(t.name)),
    (sa.Text, lambda _: "text"),
    (sa.CHAR, lambda t: f"character({t.length or 1})"),
    (sa.String, _varchar),
    ((sa.DateTime, sa.Time), _temporal),
    (sa.Date, lambda _: "date"),
    (sa.Boolean, lambda _: "boolean"),
    (sa.types.NullType, lambda _: "a type SQLAlchemy does not recognise"),
)


def _type_key(type_: TypeEngine[Any]) -> str:
    # An unbounded varchar stores and compares exactly like text.
    name = pg_type_name(type_)
    return "text" if name == "character varying" else name


def _insertable_without(column: ReflectedColumn) -> bool:
    """Whether a row can be inserted without naming this column (COPY and INSERT name only declared columns)."""
    return bool(
        column["nullable"] or column.get("default") is not None or column.get("identity") or column.get("computed")
    )


@dataclass(frozen=True)
class Comparison:
    """How an existing table differs from its declaration."""

    differences: tuple[str, ...]  # each one stops every write
    tolerated: tuple[str, ...]  # extra columns loads can live with


def compare_table(declared: sa.Table, columns: Sequence[ReflectedColumn], primary_key: Sequence[str]) -> Comparison:
    """Compare a table's reflected columns and primary key with its declaration. Pure: no database.

    Column order is not compared: every statement of the platform names its columns. An extra column is tolerated
    when rows can be inserted without it (nullable, a default, identity or generated); an extra NOT NULL column
    without a default is a difference, because every load would fail on it.
    """
    found = {c["name"]: c for c in columns}
    differences: list[str] = []
    tolerated: list[str] = []
    for column in declared.columns:
        expected = pg_type_name(column.type)
        existing = found.get(column.name)
        if existing is None:
            differences.append(f"column {column.name}: missing (expected {expected})")
            continue
        if _type_key(existing["type"]) != _type_key(column.type):
            differences.append(f"column {column.name}: expected {expected}, found {pg_type_name(existing['type'])}")
        if bool(existing["nullable"]) != bool(column.nullable):
            want, have = ("nullable", "NOT NULL") if column.nullable else ("NOT NULL", "nullable")
            differences.append(f"column {column.name}: expected {want}, found {have}")
    for name, existing in found.items():
        if name in declared.columns:
            continue
        what = f"column {name}: not declared ({pg_type_name(existing['type'])})"
        if _insertable_without(existing):
            tolerated.append(f"{what}, tolerated: loads leave it NULL or at its default")
        else:
            differences.append(f"{what} and NOT NULL without a default: loads could not insert a row")
    expected_key = [c.name for c in declared.primary_key.columns]
    if list(primary_key) != expected_key:
        have_key = f"({', '.join(primary_key)})" if primary_key else "none"
        differences.append(f"primary key: expected ({', '.join(expected_key)}), found {have_key}")
    return Comparison(tuple(differences), tuple(tolerated))


def is_legacy_table(columns: Sequence[ReflectedColumn], primary_key: Sequence[str]) -> bool:
    """The original pipeline's table: the nine columns, in table order, all character types, and no key."""
    return (
        [c["name"] for c in columns] == list(COLUMN_NAMES)
        and not primary_key
        and all(isinstance(c["type"], sa.String) and not isinstance(c["type"], sa.Enum) for c in columns)
    )


class SchemaError(RuntimeError):
    """The database's tables cannot be used as they are. Raised before anything is written."""


class SchemaMismatchError(SchemaError):
    """Existing tables differ from the declaration; the message lists every difference, expected vs found."""

    def __init__(self, schema: str, differences: dict[str, tuple[str, ...]]) -> None:
        self.differences = differences
        lines = [
            f"{qualified_name(schema, table)}: {difference}"
            for table, found in differences.items()
            for difference in found
        ]
        super().__init__(
            "The existing tables do not match the platform's declaration, so nothing was written. "
            "Fix the tables (or point the platform at another schema or table) and run again:\n  " + "\n  ".join(lines)
        )


class LegacyTableError(SchemaError):
    """The table is the original pipeline's (nine VARCHAR columns, no key): it must be migrated first."""

    def __init__(self, schema: str, table: str) -> None:
        self.schema = schema
        self.table = table
        super().__init__(
            f"{qualified_name(schema, table)} is the original pipeline's table (nine VARCHAR columns, no primary "
            "key). The platform does not load into it. Convert it in place, once, with "
            f"`{MIGRATE_LEGACY_COMMAND} --schema {schema} --table {table}` (try --dry-run first); "
            "see docs/migration.md."
        )


@dataclass(frozen=True)
class PreparedTables:
    tables: Tables
    created: tuple[str, ...]  # tables this call created
    tolerated: tuple[str, ...]  # extra columns found and tolerated (worth a log line)


def prepare_tables(engine: Engine, schema: str, table: str) -> PreparedTables:
    """Create what is missing and verify what exists, in one transaction of its own. See `prepare_tables_in`."""
    with engine.begin() as connection:
        return prepare_tables_in(connection, schema, table)


def prepare_tables_in(connection: Connection, schema: str, table: str) -> PreparedTables:
    """Make the schema, the data table, its ledger and its state table usable, in the caller's transaction.

    Existing tables are verified against the declaration first: a legacy table raises `LegacyTableError`, any
    other difference `SchemaMismatchError`, and in both cases nothing has been created. Then missing tables are
    created and the state row (version 0) is inserted if absent. Safe when several processes call it at once.
    """
    tables = declare_tables(schema, table)
    lock_schema_ddl(connection, schema)
    if not sa.inspect(connection).has_schema(schema):
        # Only when missing: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database even when the
        # schema exists, which a production role usually lacks.
        connection.execute(CreateSchema(schema))
    found = inspect_tables(connection, tables)
    if found.legacy:
        raise LegacyTableError(schema, table)
    if found.differences:
        raise SchemaMismatchError(schema, found.differences)
    missing = [t for t in tables.platform if t.name not in found.existing]
    tables.metadata.create_all(connection, tables=missing, checkfirst=False)
    connection.execute(
        postgresql.insert(tables.state)
        .values(singleton=True, version=0, committed_at=sa.func.now())
        .on_conflict_do_nothing()
    )
    return PreparedTables(tables, tuple(t.name for t in missing), found.tolerated)


@dataclass(frozen=True)
class Inspection:
    """What a schema holds of the platform's tables, compared with their declaration."""

    existing: frozenset[str]  # the platform tables that exist
    legacy: bool  # the data table is the original pipeline's (and so was not compared)
    differences: dict[str, tuple[str, ...]]  # table name -> differences, only tables that have some
    tolerated: tuple[str, ...]


def inspect_tables(connection: Connection, tables: Tables) -> Inspection:
    """Reflect the platform's tables with SQLAlchemy's inspector and compare each existing one with its declaration."""
    schema = tables.schema
    inspector = sa.inspect(connection)
    if not inspector.has_schema(schema):
        return Inspection(frozenset(), False, {}, ())
    names = set(inspector.get_table_names(schema=schema))
    not_tables = {
        *inspector.get_view_names(schema=schema),
        *inspector.get_materialized_view_names(schema=schema),
    }
    existing: set[str] = set()
    legacy = False
    differences: dict[str, tuple[str, ...]] = {}
    tolerated: list[str] = []
    for declared in tables.platform:
        if declared.name in not_tables:
            existing.add(declared.name)
            differences[declared.name] = ("is a view, not a table",)
            continue
        if declared.name not in names:
            continue
        existing.add(declared.name)
        columns = inspector.get_columns(declared.name, schema=schema)
        key = inspector.get_pk_constraint(declared.name, schema=schema)["constrained_columns"]
        if declared is tables.data and is_legacy_table(columns, key):
            legacy = True
            continue
        comparison = compare_table(declared, columns, key)
        if comparison.differences:
            differences[declared.name] = comparison.differences
        tolerated += [f"{qualified_name(schema, declared.name)}: {note}" for note in comparison.tolerated]
    return Inspection(frozenset(existing), legacy, differences, tuple(tolerated))


def lock_schema_ddl(connection: Connection, schema: str) -> None:
    """Serialise table creation and migration in one schema until the transaction ends.

    Keyed on the schema, not the table, because two processes creating different tables in a new schema would
    otherwise race on CREATE SCHEMA; and distinct from the warehouse's per-table write lock, so a process holding
    that lock on one connection can still prepare tables on another without waiting on itself.
    """
    connection.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"stock_platform:ddl:{schema}", 0)))
    )
