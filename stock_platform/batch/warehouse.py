"""SQL against the target table: create it, replace companies' rows in one transaction, export it.

Functions take an open psycopg connection, so the same code runs on the embedded server, the machine's
PostgreSQL and RDS, and tests can call them without Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO

import psycopg
import pyarrow as pa
from psycopg import sql

from stock_platform.batch.schema import (
    COLUMN_NAMES,
    KEY_COLUMNS,
    create_table_sql,
    ledger_table_name,
)
from stock_platform.batch.transforms import prices_to_csv

# Frames carry where their rows came from in the Arrow schema metadata (and so in the Parquet footer).
SOURCE_KEY = b"stock_platform.source_key"
SOURCE_ETAG = b"stock_platform.source_etag"


@dataclass(frozen=True)
class LoadResult:
    companies: int
    rows_in_batch: int
    rows_inserted: int
    rows_updated: int
    rows_deleted: int
    table_rows: int
    strategy: str  # "copy" (no previous rows) or "merge" (staged, only differing rows written)

    @property
    def rows_unchanged(self) -> int:
        return self.rows_in_batch - self.rows_inserted - self.rows_updated


def _ident(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def ensure_table(conn: psycopg.Connection, schema: str, table: str) -> None:
    with conn.cursor() as cur:
        for statement in create_table_sql(schema, table):
            cur.execute(statement.encode())


def _lock(conn: psycopg.Connection, schema: str, table: str) -> None:
    # Serialises loads of one table across runs, processes and machines; released at commit or rollback.
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"stock_platform:{schema}.{table}",)
        )


def _copy_in(conn: psycopg.Connection, target: sql.Composable, frames: Iterable[pa.Table]) -> int:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMN_NAMES)
    rows = 0
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, columns)) as copy:
            for frame in frames:
                if frame.num_rows:
                    copy.write(prices_to_csv(frame.select(list(COLUMN_NAMES))))
                    rows += frame.num_rows
    return rows


def replace_companies(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    frames: Mapping[str, pa.Table],
    run_id: str,
) -> LoadResult:
    """Make each company's rows in the table exactly its frame's rows, all companies in one transaction.

    Companies not in `frames` are never touched. On any error the transaction rolls back and the table is
    as it was. When none of the companies has rows yet the frames are COPYed straight into the table (the
    fastest load PostgreSQL has); otherwise they are COPYed into a temporary table and merged, writing only
    rows that differ, so reloading unchanged data leaves no dead tuples behind.
    """
    target = _ident(schema, table)
    companies = sorted(frames)
    batch_rows = sum(f.num_rows for f in frames.values())
    with conn.transaction():
        ensure_table(conn, schema, table)
        _lock(conn, schema, table)
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE company_name = ANY(%s))").format(target),
                (companies,),
            )
            has_previous = cur.fetchone()[0]
        if not has_previous:
            inserted = _copy_in(conn, target, frames.values())
            updated = deleted = 0
            strategy = "copy"
        else:
            inserted, updated, deleted = _merge(conn, target, companies, frames)
            strategy = "merge"
        _record_loads(conn, schema, table, frames, run_id)
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target))
            table_rows = cur.fetchone()[0]
    return LoadResult(len(companies), batch_rows, inserted, updated, deleted, table_rows, strategy)


def _merge(
    conn: psycopg.Connection, target: sql.Composable, companies: list[str], frames: Mapping[str, pa.Table]
) -> tuple[int, int, int]:
    stage = sql.Identifier("stock_platform_stage")
    key = sql.SQL(", ").join(sql.Identifier(c) for c in KEY_COLUMNS)
    values = [c for c in COLUMN_NAMES if c not in KEY_COLUMNS]
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(stage, target)
        )
    _copy_in(conn, stage, frames.values())
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ANALYZE {}").format(stage))
        cur.execute(
            sql.SQL(
                "DELETE FROM {t} AS t WHERE t.company_name = ANY(%s) AND NOT EXISTS "
                "(SELECT 1 FROM {s} AS s WHERE s.company_name = t.company_name AND s.stock_date = t.stock_date)"
            ).format(t=target, s=stage),
            (companies,),
        )
        deleted = cur.rowcount
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM {s} ON CONFLICT ({key}) DO UPDATE SET {sets} "
                "WHERE ({old}) IS DISTINCT FROM ({new}) RETURNING (xmax = 0) AS inserted"
            ).format(
                t=target,
                s=stage,
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMN_NAMES),
                key=key,
                sets=sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in values
                ),
                old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in values),
                new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in values),
            )
        )
        flags = [row[0] for row in cur.fetchall()]
    inserted = sum(1 for f in flags if f)
    return inserted, len(flags) - inserted, deleted


def _record_loads(
    conn: psycopg.Connection, schema: str, table: str, frames: Mapping[str, pa.Table], run_id: str
) -> None:
    ledger = _ident(schema, ledger_table_name(table))
    rows = []
    for company, frame in frames.items():
        meta = frame.schema.metadata or {}
        dates = frame.column("stock_date")
        rows.append(
            (
                company,
                meta.get(SOURCE_KEY, b"").decode(),
                meta.get(SOURCE_ETAG, b"").decode(),
                frame.num_rows,
                dates[0].as_py() if frame.num_rows else None,
                dates[-1].as_py() if frame.num_rows else None,
                run_id,
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "INSERT INTO {} (company_name, source_key, source_etag, row_count, min_date, max_date, run_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (company_name) DO UPDATE SET "
                "source_key = EXCLUDED.source_key, source_etag = EXCLUDED.source_etag, "
                "row_count = EXCLUDED.row_count, min_date = EXCLUDED.min_date, max_date = EXCLUDED.max_date, "
                "run_id = EXCLUDED.run_id, loaded_at = now()"
            ).format(ledger),
            rows,
        )


def loaded_etags(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """company -> ETag of the file its rows in the table came from (empty before the first load)."""
    ensure_table(conn, schema, table)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT company_name, source_etag FROM {}").format(_ident(schema, ledger_table_name(table)))
        )
        result = dict(cur.fetchall())
    conn.commit()
    return result


def export_csv(conn: psycopg.Connection, schema: str, table: str, sink: IO[bytes], header: bool = False) -> int:
    """Stream the whole table as CSV (table column order, by company then date) into `sink`; return rows."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMN_NAMES)
    query = sql.SQL("SELECT {cols} FROM {t} ORDER BY company_name, stock_date").format(
        cols=columns, t=_ident(schema, table)
    )
    options = sql.SQL("FORMAT csv, HEADER true") if header else sql.SQL("FORMAT csv")
    with conn.transaction():
        with conn.cursor() as cur:
            # A REPEATABLE READ snapshot keeps the count and the extract consistent with each other.
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SET LOCAL DateStyle = 'ISO'")
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(_ident(schema, table)))
            rows = cur.fetchone()[0]
            with cur.copy(sql.SQL("COPY ({}) TO STDOUT ({})").format(query, options)) as copy:
                for chunk in copy:
                    sink.write(chunk)
    return rows


def table_summary(conn: psycopg.Connection, schema: str, table: str) -> dict[str, object]:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT count(*), count(DISTINCT company_name), min(stock_date), max(stock_date) FROM {}"
            ).format(_ident(schema, table))
        )
        rows, companies, min_date, max_date = cur.fetchone()
    conn.commit()
    return {"rows": rows, "companies": companies, "min_date": min_date, "max_date": max_date}


@dataclass(frozen=True)
class Finding:
    """What one data-quality assertion found: how many rows break it, and a few of their keys."""

    count: int
    samples: list[str]


# name -> (SQL predicate that marks an offending row, what it means). Each becomes one asset check.
ROW_RULES: dict[str, str] = {
    "ohlc": "NOT (low_value <= open_value AND open_value <= high_value AND low_value <= close_value "
    "AND close_value <= high_value AND low_value > 0)",
    "volume": "volume_traded < 0",
    "dates": "stock_date > %(today)s OR stock_date < DATE '1900-01-01'",
}


def quality_findings(conn: psycopg.Connection, schema: str, table: str, today: object, cap: int = 20) -> dict[str, Finding]:
    """Evidence for the table's asset checks, in one scan plus a sample query per broken rule."""
    target = _ident(schema, table)
    ledger = _ident(schema, ledger_table_name(table))
    findings: dict[str, Finding] = {}
    with conn.cursor() as cur:
        filters = sql.SQL(", ").join(
            sql.SQL("count(*) FILTER (WHERE {})").format(sql.SQL(rule)) for rule in ROW_RULES.values()
        )
        cur.execute(sql.SQL("SELECT {} FROM {}").format(filters, target), {"today": today})
        counts = cur.fetchone()
        for (name, rule), count in zip(ROW_RULES.items(), counts):
            samples: list[str] = []
            if count:
                cur.execute(
                    sql.SQL("SELECT company_name || ' ' || stock_date FROM {} WHERE {} ORDER BY 1 LIMIT {}").format(
                        target, sql.SQL(rule), sql.Literal(cap)
                    ),
                    {"today": today},
                )
                samples = [r[0] for r in cur.fetchall()]
            findings[name] = Finding(count, samples)
        cur.execute(
            sql.SQL(
                "SELECT company_name || ' ' || stock_date, count(*) OVER () FROM {} "
                "GROUP BY company_name, stock_date HAVING count(*) > 1 ORDER BY 1 LIMIT {}"
            ).format(target, sql.Literal(cap))
        )
        rows = cur.fetchall()
        findings["unique_keys"] = Finding(rows[0][1] if rows else 0, [r[0] for r in rows])
        cur.execute(
            sql.SQL(
                "SELECT coalesce(l.company_name, c.company_name) || ': ledger ' || coalesce(l.row_count, 0) "
                "|| ', table ' || coalesce(c.n, 0), count(*) OVER () "
                "FROM {} l FULL JOIN (SELECT company_name, count(*) AS n FROM {} GROUP BY 1) c "
                "ON c.company_name = l.company_name WHERE coalesce(l.row_count, 0) <> coalesce(c.n, 0) ORDER BY 1 LIMIT {}"
            ).format(ledger, target, sql.Literal(cap))
        )
        rows = cur.fetchall()
        findings["rows_match_frames"] = Finding(rows[0][1] if rows else 0, [r[0] for r in rows])
    conn.commit()
    return findings
