"""SQL against the target table. This module owns every transaction: each function opens and commits (or rolls
back) its own, on an autocommit psycopg connection, so callers never commit.

Functions take an open psycopg connection, so the same code runs on the embedded server, the machine's PostgreSQL
and RDS, and tests call them without Dagster. Every transaction that changes the table also bumps the table's
version (`<table>_state`): the Output CSV records the version it was exported at, so whether the extract is
current is read from committed state, never inferred from what a run did.
"""

from __future__ import annotations

import datetime
import select
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import pq, sql

from stock_platform.batch import pgbinary
from stock_platform.batch.quality import ROWS_MATCH_LEDGER, TABLE_RULES, UNIQUE_KEYS, Finding
from stock_platform.batch.schema import (
    COLUMN_NAMES,
    KEY_COLUMNS,
    ledger_table_name,
    state_table_name,
    validate_identifier,
)
from stock_platform.batch.summary import Commit, StaleCompanies, TableState

# Frames carry where their rows came from in the Arrow schema metadata (and so in the Parquet footer).
SOURCE_KEY = b"stock_platform.source_key"
SOURCE_ETAG = b"stock_platform.source_etag"
SAMPLE_CAP = 20


@dataclass(frozen=True)
class Target:
    """The data table and its companions (the load ledger and the one-row state), validated identifiers."""

    schema: str
    table: str

    def __post_init__(self) -> None:
        validate_identifier(self.schema, "schema")
        validate_identifier(self.table, "table")

    def _ident(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    @property
    def data(self) -> sql.Composed:
        return self._ident(self.table)

    @property
    def ledger(self) -> sql.Composed:
        return self._ident(ledger_table_name(self.table))

    @property
    def state(self) -> sql.Composed:
        return self._ident(state_table_name(self.table))

    @property
    def lock_key(self) -> str:
        """The advisory-lock key that serialises every write to this table, across processes and machines."""
        return f"stock_platform:{self.schema}.{self.table}"

    @property
    def extract_lock_key(self) -> str:
        """The advisory-lock key that serialises rewrites of the table's extract (runs over disjoint companies may
        finish together: the last to rewrite must be the one that read the newest table)."""
        return f"{self.lock_key}:extract"

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


def _lock(conn: psycopg.Connection[Any], target: Target) -> None:
    # Released at commit or rollback.
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (target.lock_key,))


@contextmanager
def extract_lock(conn: psycopg.Connection[Any], target: Target) -> Iterator[None]:
    """Hold the extract's lock (a session lock of `conn`) for the block: decide, export and upload under it."""
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (target.extract_lock_key,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (target.extract_lock_key,))


def _bump_version(conn: psycopg.Connection[Any], target: Target, run_id: str) -> int:
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {s} AS s (singleton, version, committed_at, run_id) VALUES (true, 1, now(), %s) "
            "ON CONFLICT (singleton) DO UPDATE SET version = s.version + 1, committed_at = now(), "
            "run_id = EXCLUDED.run_id RETURNING version"
        ).format(s=target.state),
        (run_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _copy_in(
    conn: psycopg.Connection[Any], into: sql.Composable, frames: Mapping[str, pa.Table], companies: list[str]
) -> list[_Loaded]:
    """COPY the companies' frames in binary (pgbinary.py), reading each frame once (`frames` may read it from disk
    on each access)."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMN_NAMES)
    loaded = []
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(into, columns)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(pgbinary.SIGNATURE)
        for company in companies:
            frame = frames[company]
            if frame.num_rows:
                copy.write(pgbinary.encode_rows(frame.select(list(COLUMN_NAMES))))
            loaded.append(_Loaded.of(company, frame))
        copy.write(pgbinary.TRAILER)
    return loaded


def with_source(frame: pa.Table, key: str, etag: str) -> pa.Table:
    """The frame, recording the file it was parsed from in its schema metadata (stored with it in Parquet)."""
    return frame.replace_schema_metadata({SOURCE_KEY: key.encode(), SOURCE_ETAG: etag.encode()})


def frame_source(frame: pa.Table) -> tuple[str, str]:
    """(key, ETag) of the file a frame was parsed from, kept in its schema metadata ("" when it has none)."""
    metadata: dict[bytes, bytes] = frame.schema.metadata or {}
    return metadata.get(SOURCE_KEY, b"").decode(), metadata.get(SOURCE_ETAG, b"").decode()


@dataclass(frozen=True)
class _Loaded:
    """A company's ledger entry: where its rows came from, and how many."""

    company: str
    source_key: str
    source_etag: str
    rows: int
    min_date: datetime.date | None
    max_date: datetime.date | None

    @classmethod
    def of(cls, company: str, frame: pa.Table) -> _Loaded:
        dates = frame.column("stock_date")
        return cls(
            company,
            *frame_source(frame),
            frame.num_rows,
            dates[0].as_py() if frame.num_rows else None,
            dates[-1].as_py() if frame.num_rows else None,
        )


def replace_companies(
    conn: psycopg.Connection[Any],
    target: Target,
    frames: Mapping[str, pa.Table],
    run_id: str,
    *,
    before_commit: Callable[[], None] | None = None,
) -> Commit:
    """Make each company's rows in the table exactly its frame's rows, all companies in one transaction.

    Companies not in `frames` are never touched. On any error the transaction rolls back and the table is as it
    was; `before_commit` runs last inside the transaction, so the load can wait there for work that must be done
    before the commit (an error it raises rolls the load back). When none of the companies has rows yet the
    frames are COPYed straight into the table (the fastest load PostgreSQL has; into an empty table, with its
    primary key built afterwards: `_copy_into_empty`); otherwise they are COPYed into a temporary table and merged,
    writing only rows that differ, so reloading unchanged data leaves no dead tuples behind.
    """
    companies = sorted(frames)
    with conn.transaction():
        _lock(conn, target)
        row = conn.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE company_name = ANY(%s)), NOT EXISTS (SELECT 1 FROM {t})"
            ).format(t=target.data),
            (companies,),
        ).fetchone()
        assert row is not None
        has_rows, empty = row
        if has_rows:
            loaded, (inserted, updated, deleted) = _merge(conn, target, companies, frames)
        else:
            bulk = _copy_into_empty(conn, target, frames, companies) if empty else None
            loaded = bulk if bulk is not None else _copy_in(conn, target.data, frames, companies)
            inserted, updated, deleted = sum(entry.rows for entry in loaded), 0, 0
        _record_loads(conn, target, loaded, run_id)
        version = _bump_version(conn, target, run_id)
        if before_commit is not None:
            before_commit()
    return Commit(
        companies=tuple(companies),
        rows_inserted=inserted,
        rows_updated=updated,
        rows_deleted=deleted,
        rows_unchanged=sum(entry.rows for entry in loaded) - inserted - updated,
        version=version,
    )


# How long the load of an empty table waits for the table's exclusive lock (held by any open transaction that
# read the table) before it loads with the primary key in place instead.
EMPTY_TABLE_LOCK_TIMEOUT = "2s"


def _copy_into_empty(
    conn: psycopg.Connection[Any], target: Target, frames: Mapping[str, pa.Table], companies: list[str]
) -> list[_Loaded] | None:
    """Into an empty table (the caller knows it is): drop the primary key, COPY, and build the key again from the
    loaded rows, all in the load's transaction. None, having changed nothing, when the table has no primary key or
    its key cannot be dropped now (a lock held past `EMPTY_TABLE_LOCK_TIMEOUT`, another table's foreign key).

    Why: maintaining the key row by row was most of a first load's database time (1.1 M rows alone: COPY 2.2 s
    with the key, 0.6 s without it and 0.5 s to build it), and building an index once from all its rows is the
    bulk-load practice PostgreSQL documents ("Populating a Database"). Dropping the key takes the table's exclusive
    lock until the commit: readers of the table wait for the load instead of reading it empty, which only an
    empty table can afford; a table with rows keeps its key. The key comes back under its own name and definition,
    as the catalog gives them, and any failure rolls the whole load back, key included.
    """
    key = conn.execute(
        "SELECT conname::text, pg_get_constraintdef(oid), current_setting('lock_timeout') FROM pg_constraint "
        "WHERE conrelid = to_regclass(%s) AND contype = 'p'",
        (target.data.as_string(conn),),
    ).fetchone()
    if key is None:
        return None
    name, definition, lock_timeout = key
    try:
        with conn.transaction():  # a savepoint: the load goes on with the key in place if it cannot be dropped
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (EMPTY_TABLE_LOCK_TIMEOUT,))
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(target.data, sql.Identifier(name)))
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
    except (psycopg.errors.LockNotAvailable, psycopg.errors.DependentObjectsStillExist):
        return None
    loaded = _copy_in(conn, target.data, frames, companies)
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(target.data, sql.Identifier(name), sql.SQL(definition))
    )
    return loaded


def _merge(
    conn: psycopg.Connection[Any], target: Target, companies: list[str], frames: Mapping[str, pa.Table]
) -> tuple[list[_Loaded], tuple[int, int, int]]:
    stage = sql.Identifier("stock_platform_stage")
    values = [c for c in COLUMN_NAMES if c not in KEY_COLUMNS]
    conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(stage, target.data))
    loaded = _copy_in(conn, stage, frames, companies)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ANALYZE {}").format(stage))
        cur.execute(
            sql.SQL(
                "DELETE FROM {t} AS t WHERE t.company_name = ANY(%s) AND NOT EXISTS "
                "(SELECT 1 FROM {s} AS s WHERE s.company_name = t.company_name AND s.stock_date = t.stock_date)"
            ).format(t=target.data, s=stage),
            (companies,),
        )
        deleted = cur.rowcount
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM {s} ON CONFLICT ({key}) DO UPDATE SET {sets} "
                "WHERE ({old}) IS DISTINCT FROM ({new}) RETURNING (xmax = 0) AS inserted"
            ).format(
                t=target.data,
                s=stage,
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMN_NAMES),
                key=sql.SQL(", ").join(sql.Identifier(c) for c in KEY_COLUMNS),
                sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in values),
                old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in values),
                new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in values),
            )
        )
        flags = [row[0] for row in cur.fetchall()]
    inserted = sum(1 for f in flags if f)
    return loaded, (inserted, len(flags) - inserted, deleted)


def _record_loads(conn: psycopg.Connection[Any], target: Target, loaded: list[_Loaded], run_id: str) -> None:
    rows = [(e.company, e.source_key, e.source_etag, e.rows, e.min_date, e.max_date, run_id) for e in loaded]
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL(
                "INSERT INTO {} (company_name, source_key, source_etag, row_count, min_date, max_date, run_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (company_name) DO UPDATE SET "
                "source_key = EXCLUDED.source_key, source_etag = EXCLUDED.source_etag, "
                "row_count = EXCLUDED.row_count, min_date = EXCLUDED.min_date, max_date = EXCLUDED.max_date, "
                "run_id = EXCLUDED.run_id, loaded_at = now()"
            ).format(target.ledger),
            rows,
        )


def prune(conn: psycopg.Connection[Any], target: Target, companies: Collection[str], run_id: str) -> Commit:
    """Remove every row (and the ledger entry) of `companies`, in one transaction."""
    names = sorted(companies)
    with conn.transaction():
        _lock(conn, target)
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE company_name = ANY(%s)").format(target.data), (names,)
        ).rowcount
        conn.execute(sql.SQL("DELETE FROM {} WHERE company_name = ANY(%s)").format(target.ledger), (names,))
        version = _bump_version(conn, target, run_id)
    return Commit((), 0, 0, deleted, 0, version, pruned=tuple(names))


def loaded_etags(conn: psycopg.Connection[Any], target: Target) -> dict[str, str]:
    """company -> ETag of the file its rows in the table came from (empty before the first load)."""
    rows = conn.execute(sql.SQL("SELECT company_name, source_etag FROM {}").format(target.ledger)).fetchall()
    return dict(rows)


def stale_companies(conn: psycopg.Connection[Any], target: Target, current: Collection[str]) -> StaleCompanies:
    """Companies with rows in the table that are not in `current` (listed with a file), and their rows."""
    rows = conn.execute(
        sql.SQL("SELECT company_name, row_count FROM {} WHERE NOT (company_name = ANY(%s)) ORDER BY 1").format(
            target.ledger
        ),
        (sorted(current),),
    ).fetchall()
    return StaleCompanies(tuple(r[0] for r in rows), sum(int(r[1]) for r in rows))


def table_state(conn: psycopg.Connection[Any], target: Target, known: TableState | None = None) -> TableState:
    """The table as it stands: `known` when the table is still at its version (see `_state_at`)."""
    with conn.transaction():
        # One snapshot: the counts and the version describe the same committed state.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _state_at(conn, target, known)


def _state_at(conn: psycopg.Connection[Any], target: Target, known: TableState | None) -> TableState:
    """The state in this transaction's snapshot, counted only when the table's version moved past `known`'s.

    Every transaction of the platform that writes the table bumps its version (`_bump_version`), so the same
    version is the same rows: a run's checks count the table once after its commit, and its extract and its
    summary take those counts instead of scanning the table twice more (0.16-0.2 s each at 1.1 M rows, a sixth
    of a run with no input changed). A row changed by hand outside the platform does not move the version; the
    next run that writes the table counts it again.
    """
    if known is not None and table_version(conn, target) == known.version:
        return known
    return _table_state(conn, target)


def _table_state(conn: psycopg.Connection[Any], target: Target) -> TableState:
    # Per company first: `count(DISTINCT company_name)` sorts every row (0.32 s at 1.1 M rows against 0.06 s), and
    # the state is read two or three times a run (the no-change run's largest cost after the listing).
    row = conn.execute(
        sql.SQL(
            "SELECT coalesce(sum(n), 0), count(*), min(lo)::text, max(hi)::text, ({v}) "
            "FROM (SELECT count(*) AS n, min(stock_date) AS lo, max(stock_date) AS hi FROM {t} GROUP BY company_name) c"
        ).format(t=target.data, v=_version_query(target))
    ).fetchone()
    assert row is not None
    return TableState(rows=int(row[0]), companies=row[1], min_date=row[2], max_date=row[3], version=int(row[4]))


def _version_query(target: Target) -> sql.Composed:
    return sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(target.state)


def table_version(conn: psycopg.Connection[Any], target: Target) -> int:
    """The table's version alone (what the extract compares), without counting its rows."""
    row = conn.execute(_version_query(target)).fetchone()
    return int(row[0]) if row else 0


def table_identity(conn: psycopg.Connection[Any], target: Target) -> str:
    """The table's identity beyond its version number: its OID, which a recreated table (a new database, a restore
    into a fresh schema) does not keep, while its version starts again at 1."""
    row = conn.execute("SELECT to_regclass(%s)::oid::text", (target.data.as_string(conn),)).fetchone()
    return str(row[0]) if row and row[0] else ""


@contextmanager
def csv_export(
    conn: psycopg.Connection[Any], target: Target, header: bool = False, known: TableState | None = None
) -> Iterator[tuple[TableState, Iterator[bytes]]]:
    """The whole table as CSV (table column order, by company then date), as chunks to stream while the block runs.

    The state comes first, from the same REPEATABLE READ snapshot as the rows: the row count and the version are
    known before the first row is sent (the extract's upload records them), and the three always agree. `known`:
    as in `table_state`.
    """
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMN_NAMES)
    query = sql.SQL("SELECT {cols} FROM {t} ORDER BY company_name, stock_date").format(cols=columns, t=target.data)
    options = sql.SQL("FORMAT csv, HEADER true") if header else sql.SQL("FORMAT csv")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SET LOCAL DateStyle = 'ISO'")
        state = _state_at(conn, target, known)
        with copy_out(conn, sql.SQL("COPY ({}) TO STDOUT ({})").format(query, options), EXPORT_BLOCK_BYTES) as out:
            yield state, out


EXPORT_BLOCK_BYTES = 1 << 20


@contextmanager
def copy_out(conn: psycopg.Connection[Any], statement: sql.Composable, size: int) -> Iterator[Iterator[bytes]]:
    """A `COPY ... TO STDOUT`'s data, in blocks of at least `size` bytes (the last may be shorter), to read while
    the block runs.

    Read with libpq's own calls (psycopg's documented low-level `pgconn`), not psycopg's `Copy`: PostgreSQL sends a
    message per row, and psycopg spends several Python calls on each. Reading (and hashing) the 1.1 M rows of a
    500-company extract took 0.55 CPU-s through psycopg's `Copy`, 0.33 this way. Leaving the block before the last
    row reads the rest, as psycopg's `Copy` does, so the connection is usable again; an error PostgreSQL reports
    raises.
    """
    pgconn = conn.pgconn
    pgconn.send_query(statement.as_bytes(conn))
    _copy_result(pgconn, pq.ExecStatus.COPY_OUT)
    finished = False

    def read() -> Iterator[bytes]:
        nonlocal finished
        block = bytearray()
        while True:
            # Non-blocking (1): 0 means no whole row has arrived yet, -1 the end of the data, -2 an error.
            length, row = pgconn.get_copy_data(1)
            if length > 0:
                block += row
                if len(block) >= size:
                    yield bytes(block)
                    block.clear()
            elif length == 0:
                _wait_readable(pgconn)
            elif length == -1:
                break
            else:
                finished = True  # the connection failed: nothing more to read from it
                raise psycopg.OperationalError(pgconn.get_error_message())
        finished = True
        if block:
            yield bytes(block)

    try:
        yield read()
    finally:
        if not finished:
            for _ in read():  # the rows not read: the connection is in COPY until they are
                pass
        _copy_result(pgconn, pq.ExecStatus.COMMAND_OK)


def _wait_readable(pgconn: pq.abc.PGconn) -> None:
    select.select([pgconn.socket], [], [])  # the interpreter is free while it waits
    pgconn.consume_input()


def _copy_result(pgconn: pq.abc.PGconn, expected: pq.ExecStatus) -> None:
    """The statement's next result, which must have the `expected` status (an error PostgreSQL reports raises).
    Unless the COPY is starting, the statement is over: every result it has left is read first, so that the
    connection is ready for the next statement whatever happened."""
    result = _next_result(pgconn)
    if result is not None and result.status == expected == pq.ExecStatus.COPY_OUT:
        return
    while _next_result(pgconn) is not None:
        pass
    if result is None or result.status != expected:
        message = result.error_message.decode(errors="replace").strip() if result is not None else "no result"
        raise psycopg.DatabaseError(f"COPY TO failed: {message}")


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    while pgconn.is_busy():
        _wait_readable(pgconn)
    return pgconn.get_result()


@dataclass(frozen=True)
class Inspection:
    """The evidence for every table rule and the table's state, from one snapshot and one scan of the table."""

    findings: dict[str, Finding]
    state: TableState


def quality_findings(
    conn: psycopg.Connection[Any], target: Target, today: datetime.date, cap: int = SAMPLE_CAP
) -> Inspection:
    """Evidence for every table rule (quality.TABLE_RULES), in one snapshot so the findings agree with each other,
    and the table's state in that snapshot.

    One scan of the table counts each company's rows, dates and each row rule's offenders (the ledger rule compares
    those counts with the ledger; the state sums them); a sample query runs only for a broken rule. The key rule is
    the primary key PostgreSQL enforces on every write: its presence is the evidence, and only a table without it
    is scanned for duplicates. (Three scans before; the no-change run spent most of its time there.)
    """
    row_rules = [r for r in TABLE_RULES if r.predicate]
    findings: dict[str, Finding] = {}
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        filters = sql.SQL(", ").join(
            sql.SQL("count(*) FILTER (WHERE {})").format(sql.SQL(r.predicate or "")) for r in row_rules
        )
        # The table's first and last dates over every company, on each company's row (a window over the groups).
        per_company = conn.execute(
            sql.SQL(
                "SELECT company_name, count(*), (min(min(stock_date)) OVER ())::text, "
                "(max(max(stock_date)) OVER ())::text, {} FROM {} GROUP BY company_name"
            ).format(filters, target.data),
            {"today": today},
        ).fetchall()
        first = per_company[0] if per_company else None
        state = TableState(
            rows=sum(int(row[1]) for row in per_company),
            companies=len(per_company),
            min_date=first[2] if first else None,
            max_date=first[3] if first else None,
            version=table_version(conn, target),
        )
        for index, rule in enumerate(row_rules):
            count = sum(int(row[4 + index]) for row in per_company)
            samples: list[str] = []
            if count:
                samples = [
                    r[0]
                    for r in conn.execute(
                        sql.SQL("SELECT company_name || ' ' || stock_date FROM {} WHERE {} ORDER BY 1 LIMIT {}").format(
                            target.data, sql.SQL(rule.predicate or ""), sql.Literal(cap)
                        ),
                        {"today": today},
                    ).fetchall()
                ]
            findings[rule.name] = Finding(count, samples)
        counted = {str(row[0]): int(row[1]) for row in per_company}
        ledger = {
            str(c): int(n)
            for c, n in conn.execute(sql.SQL("SELECT company_name, row_count FROM {}").format(target.ledger)).fetchall()
        }
        mismatched = sorted(
            f"{company}: ledger {ledger.get(company, 0)}, table {counted.get(company, 0)}"
            for company in counted.keys() | ledger.keys()
            if ledger.get(company, 0) != counted.get(company, 0)
        )
        findings[ROWS_MATCH_LEDGER.name] = Finding(len(mismatched), mismatched[:cap])
        if primary_key(conn, target) == list(KEY_COLUMNS):
            basis = f"primary key ({', '.join(KEY_COLUMNS)}) enforced by PostgreSQL"
            findings[UNIQUE_KEYS.name] = Finding(0, [], basis=basis)
        else:
            findings[UNIQUE_KEYS.name] = _finding(
                conn,
                sql.SQL(
                    "SELECT company_name || ' ' || stock_date, count(*) OVER () FROM {} "
                    "GROUP BY company_name, stock_date HAVING count(*) > 1 ORDER BY 1 LIMIT {}"
                ).format(target.data, sql.Literal(cap)),
            )
    return Inspection(findings, state)


def primary_key(conn: psycopg.Connection[Any], target: Target) -> list[str]:
    """The data table's primary-key columns, in key order (empty when it has none)."""
    row = conn.execute(
        "SELECT array_agg(a.attname::text ORDER BY k.n) FROM pg_constraint c "
        "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
        "WHERE c.conrelid = to_regclass(%s) AND c.contype = 'p' GROUP BY c.oid",
        (target.data.as_string(conn),),
    ).fetchone()
    return list(row[0]) if row and row[0] else []


def _finding(conn: psycopg.Connection[Any], query: sql.Composed) -> Finding:
    rows = conn.execute(query).fetchall()
    return Finding(int(rows[0][1]) if rows else 0, [r[0] for r in rows])
