"""Convert the original pipeline's table in place: nine VARCHAR columns, no key, duplicates -> the platform's table.

One transaction: the legacy rows are read into a temporary table and judged by the platform's row rules (the same
rules, in the same order and with the same messages, as transforms.py), the rows that do not convert go to
`<table>_migration_rejects` with their raw values, duplicates are resolved the way a load resolves them, and the
table is truncated, retyped, refilled and keyed. Its ledger and state tables are created, so the platform then
loads into it. Any error rolls everything back and the legacy table is exactly as it was. See docs/migration.md.

The rules run in SQL rather than through transforms.py because the table can hold millions of rows and must be
converted inside one database transaction; the integration tests check that the rows kept equal what
transforms.parse_stock_csv keeps from the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import AddConstraint, SetColumnComment, SetTableComment

from stock_platform.batch.schema import (
    COLUMN_NAMES,
    SchemaError,
    SchemaMismatchError,
    Tables,
    declare_tables,
    inspect_tables,
    lock_schema_ddl,
    pg_type_name,
    prepare_tables_in,
    qualified_name,
    quote_ident,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11; SQLAlchemy's own dependency

RUN_ID = "migrate-legacy"
# How many offending rows an error names; the rest are counted.
_SAMPLE = 10
CONFLICTING_DUPLICATE = "conflicting duplicate: a later row for the same company and date was kept"

# strtod's rounding bounds: a decimal value at or beyond 2**1024 - 2**970 rounds to infinity, one at or below
# 2**-1075 rounds to zero. pyarrow parses prices that way; PostgreSQL raises an error instead, so the
# conversion compares against these exact values before it casts.
_DOUBLE_OVERFLOW = str(2**1024 - 2**970)
_DOUBLE_UNDERFLOW = "0." + str(5**1075).rjust(1075, "0")

# The parsers, as temporary functions: they vanish with the session, and with the transaction when it rolls back.
# Each returns NULL for a value transforms.py would reject and never raises, so no legacy value can abort the
# migration. CASE arms are evaluated in order, which is what guards each cast.
_FUNCTIONS = (
    # transforms.py trims with pyarrow's utf8_trim_whitespace; the legacy extract only ever held ASCII whitespace.
    """
CREATE FUNCTION pg_temp.stock_platform_trim(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(btrim(value, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)), '')
$$""",
    # An ISO date (YYYY-MM-DD) that exists in the calendar; year 0000 does not.
    """
CREATE FUNCTION pg_temp.stock_platform_date(value text) RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN value !~ '^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-[0-9]{2}-[0-9]{2}$' THEN NULL
        WHEN substr(value, 6, 2)::int NOT BETWEEN 1 AND 12 THEN NULL
        WHEN substr(value, 9, 2)::int NOT BETWEEN 1 AND extract(
            day FROM make_date(substr(value, 1, 4)::int, substr(value, 6, 2)::int, 1) + interval '1 month - 1 day'
        )::int THEN NULL
        ELSE make_date(substr(value, 1, 4)::int, substr(value, 6, 2)::int, substr(value, 9, 2)::int)
    END
$$""",
    # A decimal or scientific number with a finite double value ("nan", "inf" and hex are not numbers). A plain
    # decimal of at most 200 characters cannot overflow or underflow: it is cast directly (the common case, kept
    # cheap: bounded repetitions such as {1,200} make PostgreSQL's regular expressions many times slower).
    # Exponents of 1000 or more exceed numeric's input range and are decided by their sign.
    f"""
CREATE FUNCTION pg_temp.stock_platform_number(value text) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN value ~ '^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)$' AND length(value) <= 200 THEN value::double precision
        WHEN value !~ '^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$' THEN NULL
        WHEN length(ltrim(substring(value FROM '[eE][+-]?([0-9]+)$'), '0')) > 3 THEN
            CASE WHEN value ~ '[eE]-' OR value ~ '^[+-]?[0.]*[eE]' THEN 0 END
        WHEN abs(value::numeric) >= {_DOUBLE_OVERFLOW} THEN NULL
        WHEN abs(value::numeric) <= {_DOUBLE_UNDERFLOW} THEN 0
        ELSE value::double precision
    END
$$""",
    # A non-negative integer of at most 18 digits, optionally written with a zero fraction.
    r"""
CREATE FUNCTION pg_temp.stock_platform_volume(value text) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN value ~ '^[+]?[0-9]{1,18}([.]0*)?$' THEN regexp_replace(value, '^[+]|[.]0*$', '', 'g')::bigint
    END
$$""",
)

# The first rule a row breaks, in transforms.py's order and words, after the two the file name used to settle: a
# row without a usable company could never have been loaded by the platform.
_REASON = """
CASE
    WHEN t_company = '' THEN 'company_name is missing'
    WHEN t_company !~ '^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$'
        THEN 'company_name is not a valid company key (letters, digits, _ and -, at most 100)'
    WHEN stock_date IS NULL THEN 'Date is not a valid ISO date (YYYY-MM-DD)'
    WHEN t_open = '' THEN 'Open is missing'
    WHEN open_value IS NULL THEN 'Open is not a finite number'
    WHEN t_high = '' THEN 'High is missing'
    WHEN high_value IS NULL THEN 'High is not a finite number'
    WHEN t_low = '' THEN 'Low is missing'
    WHEN low_value IS NULL THEN 'Low is not a finite number'
    WHEN t_close = '' THEN 'Close is missing'
    WHEN close_value IS NULL THEN 'Close is not a finite number'
    WHEN t_volume = '' THEN 'Volume is missing'
    WHEN volume_traded IS NULL THEN 'Volume is not a non-negative integer'
END"""

_STAGE = "stock_platform_migration"
_PRICES = ("open_value", "high_value", "low_value", "close_value")


class LegacyValueError(SchemaError):
    """Some kept rows have prices whose derived columns do not fit in double precision; nothing was changed."""


@dataclass(frozen=True)
class MigrationReport:
    """What the migration found and did; `status` is "current" when the table needed no migration."""

    schema: str
    table: str
    status: Literal["migrated", "current"]
    dry_run: bool
    rows_before: int = 0
    rows_converted: int = 0
    rejected: tuple[tuple[str, int], ...] = ()  # (reason, rows), most frequent first
    duplicates: int = 0
    conflicting_duplicates: int = 0
    lower_cased_rows: int = 0
    rows_after: int = 0
    companies: int = 0
    created: tuple[str, ...] = ()
    version: int = 0

    @property
    def rows_rejected(self) -> int:
        return sum(n for _, n in self.rejected)

    @property
    def reconciles(self) -> bool:
        return (
            self.rows_before == self.rows_converted + self.rows_rejected
            and self.rows_converted == self.rows_after + self.duplicates
        )

    def lines(self) -> list[str]:
        """The report as printed by `stock-platform migrate-legacy`."""
        target = qualified_name(self.schema, self.table)
        if self.status == "current":
            return [f"{target} already has the platform's schema: nothing to migrate."]
        rejects = qualified_name(self.schema, declare_tables(self.schema, self.table).migration_rejects.name)
        width = len(f"{max(self.rows_before, 1):,}")

        def row(label: str, value: int, note: str = "") -> str:
            return f"{label:<27}{value:>{width},}{'  ' + note if note else ''}"

        lines = [
            f"{target}: the original pipeline's table (nine VARCHAR columns, no primary key)",
            row("rows before:", self.rows_before),
            row("rows converted:", self.rows_converted),
            row("rows rejected:", self.rows_rejected, f"(raw values and reason in {rejects})"),
            *(f"  {reason}: {count:,}" for reason, count in self.rejected),
            row(
                "duplicates removed:",
                self.duplicates,
                f"({self.duplicates - self.conflicting_duplicates:,} exact, {self.conflicting_duplicates:,} "
                "conflicting: the row stored last was kept; the conflicting ones are in the rejects table)",
            ),
            row("rows lower-cased company:", self.lower_cased_rows),
            row("rows after:", self.rows_after, f"({self.companies:,} companies)"),
            f"key added: ({', '.join(declare_tables(self.schema, self.table).data.primary_key.columns.keys())}); "
            f"created: {', '.join(self.created) or 'nothing'}; state version {self.version}",
        ]
        if self.dry_run:
            lines.append("dry run: rolled back, nothing was changed.")
        else:
            lines.append("committed.")
        return lines


def migrate_legacy_table(engine: Engine, schema: str, table: str, *, dry_run: bool = False) -> MigrationReport:
    """Convert the original pipeline's table into the platform's, in place and in one transaction.

    Raises `SchemaError` (nothing changed) when the table is missing, is neither legacy nor the platform's, or a
    companion table is in the way. With `dry_run` the whole conversion runs and is rolled back, so the report is
    exactly what a real run would do.
    """
    tables = declare_tables(schema, table)
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            report = _migrate(connection, tables, dry_run)
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return report


def _migrate(connection: Connection, tables: Tables, dry_run: bool) -> MigrationReport:
    schema, table = tables.schema, tables.data.name
    target = qualified_name(schema, table)
    lock_schema_ddl(connection, schema)
    found = inspect_tables(connection, tables)
    if table not in found.existing:
        raise SchemaError(f"{target} does not exist: there is nothing to migrate (check --schema and --table).")
    if found.differences:
        raise SchemaMismatchError(schema, found.differences)
    if not found.legacy:
        return MigrationReport(schema, table, "current", dry_run)
    rejects = tables.migration_rejects
    if sa.inspect(connection).has_table(rejects.name, schema=schema):
        raise SchemaError(
            f"{qualified_name(schema, rejects.name)} already exists (from an earlier migration?): rename or drop it, "
            "then run again."
        )

    def run(statement: str, **params: object) -> sa.CursorResult[Unpack[tuple[Any, ...]]]:
        return _run(connection, statement, **params)

    # Nobody reads or writes the table while it changes shape; readers wait rather than see it half-converted.
    run(f"LOCK TABLE {target} IN ACCESS EXCLUSIVE MODE")
    for function in _FUNCTIONS:
        run(function)
    _stage(connection, target)
    counts = run(
        f"""
SELECT count(*),
       count(*) FILTER (WHERE reason IS NULL),
       count(*) FILTER (WHERE rank_from_last > 1),
       count(*) FILTER (WHERE rank_from_last > 1 AND differs_from_kept),
       count(*) FILTER (WHERE reason IS NULL AND t_company <> company_name),
       count(*) FILTER (WHERE rank_from_last = 1),
       count(DISTINCT company_name) FILTER (WHERE rank_from_last = 1)
FROM {_STAGE}"""
    ).one()
    rejected = run(
        f"SELECT reason, count(*) FROM {_STAGE} WHERE reason IS NOT NULL GROUP BY reason ORDER BY 2 DESC, 1"
    ).all()

    _refuse_overflowing_rows(connection, target)
    rejects.create(connection)
    raw = ", ".join(quote_ident(c) for c in COLUMN_NAMES)
    run(
        f"""
INSERT INTO {qualified_name(schema, rejects.name)} (legacy_row, reason, kept_row, {raw})
SELECT legacy_row, coalesce(reason, :conflicting), CASE WHEN reason IS NULL THEN kept_row END,
       {", ".join(f"raw_{c}" for c in COLUMN_NAMES)}
FROM {_STAGE} WHERE reason IS NOT NULL OR (rank_from_last > 1 AND differs_from_kept)
ORDER BY legacy_row""",
        conflicting=CONFLICTING_DUPLICATE,
    )
    _convert_in_place(connection, tables)
    prepared = prepare_tables_in(connection, schema, table)
    run(
        f"""
INSERT INTO {qualified_name(schema, tables.ledger.name)}
    (company_name, source_key, source_etag, row_count, min_date, max_date, run_id)
SELECT company_name, :source, '', count(*), min(stock_date), max(stock_date), :run_id
FROM {target} GROUP BY company_name
ON CONFLICT (company_name) DO UPDATE SET source_key = EXCLUDED.source_key, source_etag = EXCLUDED.source_etag,
    row_count = EXCLUDED.row_count, min_date = EXCLUDED.min_date, max_date = EXCLUDED.max_date,
    run_id = EXCLUDED.run_id, loaded_at = now()""",
        # An empty ETag matches no S3 object, so the next run reloads each listed company from its file.
        source=f"{RUN_ID}:{schema}.{table}",
        run_id=RUN_ID,
    )
    version = run(
        f"UPDATE {qualified_name(schema, tables.state.name)} "
        "SET version = version + 1, committed_at = now(), run_id = :run_id RETURNING version",
        run_id=RUN_ID,
    ).scalar_one()
    run(f"ANALYZE {target}")
    before, converted, duplicates, conflicting, lower_cased, after, companies = (int(v) for v in counts)
    return MigrationReport(
        schema=schema,
        table=table,
        status="migrated",
        dry_run=dry_run,
        rows_before=before,
        rows_converted=converted,
        rejected=tuple((str(r[0]), int(r[1])) for r in rejected),
        duplicates=duplicates,
        conflicting_duplicates=conflicting,
        lower_cased_rows=lower_cased,
        rows_after=after,
        companies=companies,
        created=(rejects.name, *prepared.created),
        version=int(version),
    )


def _run(connection: Connection, statement: str, **params: object) -> sa.CursorResult[Unpack[tuple[Any, ...]]]:
    return connection.execute(sa.text(statement), params)


def _stage(connection: Connection, target: str) -> None:
    """Every legacy row with its position, raw values, parsed values, the first rule it breaks, and its rank.

    A row's position is its place in the table's storage order (ctid): for a table that was only ever appended
    to, as the original pipeline did, that is the order it was loaded in. Among the valid rows of one company and
    date the last one is kept, as a load keeps the last valid occurrence of a date in a file.
    """
    raw = ", ".join(f"{quote_ident(c)}::text AS raw_{c}" for c in COLUMN_NAMES)
    _run(
        connection,
        f"""
CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS
WITH raw AS (
    SELECT row_number() OVER (ORDER BY ctid) AS legacy_row, {raw} FROM {target}
), trimmed AS (
    SELECT raw.*,
           pg_temp.stock_platform_trim(raw_stock_date) AS t_date,
           pg_temp.stock_platform_trim(raw_open_value) AS t_open,
           pg_temp.stock_platform_trim(raw_high_value) AS t_high,
           pg_temp.stock_platform_trim(raw_low_value) AS t_low,
           pg_temp.stock_platform_trim(raw_close_value) AS t_close,
           pg_temp.stock_platform_trim(raw_volume_traded) AS t_volume,
           pg_temp.stock_platform_trim(raw_company_name) AS t_company
    FROM raw
), parsed AS (
    SELECT trimmed.*,
           pg_temp.stock_platform_date(t_date) AS stock_date,
           pg_temp.stock_platform_number(t_open) AS open_value,
           pg_temp.stock_platform_number(t_high) AS high_value,
           pg_temp.stock_platform_number(t_low) AS low_value,
           pg_temp.stock_platform_number(t_close) AS close_value,
           pg_temp.stock_platform_volume(t_volume) AS volume_traded,
           lower(t_company) AS company_name
    FROM trimmed
), judged AS (
    SELECT parsed.*, {_REASON} AS reason FROM parsed
)
SELECT judged.*,
       CASE WHEN reason IS NULL THEN row_number() OVER last_first END AS rank_from_last,
       CASE WHEN reason IS NULL THEN first_value(legacy_row) OVER last_first END AS kept_row,
       ({", ".join((*_PRICES, "volume_traded"))}) IS DISTINCT FROM
           ({", ".join(f"first_value({c}) OVER last_first" for c in (*_PRICES, "volume_traded"))})
           AS differs_from_kept
FROM judged
WINDOW last_first AS (PARTITION BY reason IS NULL, company_name, stock_date ORDER BY legacy_row DESC)""",
    )


def _refuse_overflowing_rows(connection: Connection, target: str) -> None:
    """Stop, naming the rows, when a kept row's derived columns would overflow double precision.

    pyarrow would store such a row with an infinite or zero percent change; PostgreSQL raises an error in the
    middle of the conversion instead. Only absurd prices (beyond 1e150, or an open below 1e-150) can get there,
    so those few rows are checked exactly, in numeric.
    """
    overflow, underflow = _DOUBLE_OVERFLOW, _DOUBLE_UNDERFLOW
    rows = _run(
        connection,
        f"""
SELECT format('%s %s (open %s, close %s)', raw_company_name, raw_stock_date, raw_open_value, raw_close_value),
       count(*) OVER ()
FROM (
    SELECT legacy_row, raw_company_name, raw_stock_date, raw_open_value, raw_close_value,
           open_value::numeric AS o, close_value::numeric AS c
    FROM {_STAGE}
    WHERE rank_from_last = 1
      AND (abs(open_value) > 1e150 OR abs(close_value) > 1e150 OR (open_value <> 0 AND abs(open_value) < 1e-150))
) AS absurd
WHERE abs(c - o) >= {overflow}
   OR (o <> 0 AND abs(c - o) * 100 >= {overflow} * abs(o))
   OR (o <> 0 AND c <> o AND abs(c - o) <= {underflow} * abs(o))
ORDER BY legacy_row LIMIT {_SAMPLE}""",
    ).all()
    if rows:
        raise LegacyValueError(
            f"{target}: {rows[0][1]} row(s) have prices whose value_change or daily_percent_change does not fit "
            f"in double precision: {'; '.join(str(r[0]) for r in rows)}. Correct or delete them in the legacy table "
            "and run again."
        )


def _convert_in_place(connection: Connection, tables: Tables) -> None:
    """Empty the table, give it the declared types, refill it with the kept rows, then add the key and comments.

    In place (TRUNCATE + ALTER on the same table) rather than a new table swapped in, so the table keeps its
    owner, grants and anything else that refers to it. Filling before keying builds the index once, in bulk.
    """
    data = tables.data
    target = qualified_name(tables.schema, data.name)
    _run(connection, f"TRUNCATE {target}")
    retype = ", ".join(
        f"ALTER COLUMN {quote_ident(c.name)} TYPE {pg_type_name(c.type)} USING NULL" for c in data.columns
    )
    _run(connection, f"ALTER TABLE {target} {retype}")
    # The derived columns exactly as transforms.py computes them: close - open, and (close - open) / open * 100
    # in that order, NULL when open is 0.
    derived = {
        "value_change": "close_value - open_value",
        "daily_percent_change": (
            "CASE WHEN open_value = 0 THEN NULL ELSE (close_value - open_value) / open_value * 100 END"
        ),
    }
    columns = ", ".join(quote_ident(c) for c in COLUMN_NAMES)
    values = ", ".join(derived.get(c, c) for c in COLUMN_NAMES)
    _run(
        connection,
        f"INSERT INTO {target} ({columns}) SELECT {values} FROM {_STAGE} WHERE rank_from_last = 1 "
        "ORDER BY company_name, stock_date",
    )
    not_null = [f"ALTER COLUMN {quote_ident(c.name)} SET NOT NULL" for c in data.columns if not c.nullable]
    if not_null:
        _run(connection, f"ALTER TABLE {target} {', '.join(not_null)}")
    connection.execute(AddConstraint(data.primary_key))
    connection.execute(SetTableComment(data))
    for column in data.columns:
        if column.comment:
            connection.execute(SetColumnComment(column))
