"""The one declaration of the table: its columns, their Arrow and PostgreSQL types, its key and its DDL.

Everything that writes or reads `historical_stocks_data` (the transform, the Parquet frames, the COPY, the
Output CSV) takes its column order from `TABLE_COLUMNS`, so the four can never drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    arrow_type: pa.DataType
    pg_type: str
    description: str


TABLE_COLUMNS: tuple[Column, ...] = (
    Column("stock_date", pa.date32(), "date", "Trading day (from the file's Date column)."),
    Column("open_value", pa.float64(), "double precision", "Opening price."),
    Column("high_value", pa.float64(), "double precision", "Highest price of the day."),
    Column("low_value", pa.float64(), "double precision", "Lowest price of the day."),
    Column("close_value", pa.float64(), "double precision", "Closing price."),
    Column("volume_traded", pa.int64(), "bigint", "Shares traded."),
    Column(
        "daily_percent_change",
        pa.float64(),
        "double precision",
        "(close - open) / open * 100; NULL when open is 0.",
    ),
    Column("value_change", pa.float64(), "double precision", "close - open."),
    Column("company_name", pa.string(), "text", "File name before the first dot, as written (e.g. aapl)."),
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


def create_table_sql(schema: str, table: str) -> list[str]:
    """DDL for the data table and its load ledger, idempotent."""
    target = qualified_name(schema, table)
    ledger = qualified_name(schema, ledger_table_name(table))
    columns = ",\n    ".join(
        f"{quote_ident(c.name)} {c.pg_type}{' NOT NULL' if c.name in KEY_COLUMNS else ''}"
        for c in TABLE_COLUMNS
    )
    key = ", ".join(quote_ident(c) for c in KEY_COLUMNS)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}",
        f"CREATE TABLE IF NOT EXISTS {target} (\n    {columns},\n    PRIMARY KEY ({key})\n)",
        # One row per company: which S3 object (and ETag) its rows in the table came from. It is written in
        # the same transaction as the rows, so it can never disagree with them.
        f"""CREATE TABLE IF NOT EXISTS {ledger} (
    company_name text PRIMARY KEY,
    source_key text NOT NULL,
    source_etag text NOT NULL,
    row_count bigint NOT NULL,
    min_date date,
    max_date date,
    run_id text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
)""",
    ]


def ledger_table_name(table: str) -> str:
    return validate_identifier(f"{table}_loads", "ledger table")
