"""Dagster's event log storages, each keeping its database connection open between writes.

Dagster's storages open a connection for every write (`NullPool`), and a run writes one event per processed
company: ~500 for a batch. That connection is the larger part of an event's cost.

- Local instance (SQLite, `make run` / `make ui`): `SqliteEventLogStorage` also builds a new engine per write, and
  closing the last connection to a WAL database checkpoints it. A materialization is written to two databases
  (the run's shard and the cross-run index), so each one cost ~5 ms here (two engines, two connections, two
  commits, two checkpoints): recording them was the longest task of a batch run. `HeldSqliteEventLogStorage`
  keeps one connection per database (the index and the few most recent run shards) and checkpoints a run's shard
  after each write instead of reopening it: ~2 ms per event, with the same tables, files and durability (every
  commit is still synced). The checkpoint is what keeps the UI live: Dagster's webserver follows a running run by
  watching its shard's `.db` file for changes, and a write that stayed in the `-wal` file would not show until
  the run ended.
- Production (PostgreSQL, the repository's dagster.yaml and deploy/ecs/dagster.yaml): `PostgresEventLogStorage`
  connects for every write; against RDS that is a TCP and TLS handshake per event. `HeldPostgresEventLogStorage`
  keeps one connection per process (the webserver's own pool is left as Dagster sets it), checked before each
  use so that a connection the server dropped is replaced: 7.3-8.3 ms per event -> 1.4 ms against the machine's
  PostgreSQL over loopback, without TLS.

Batches: a run records one materialization per company it processed, and Dagster hands a batch of asset events to
`store_event_batch` in one call when batching is on (`DAGSTER_EVENT_BATCH_SIZE`, set by stock_platform/runtime.py)
and the events carry a batch's metadata. Dagster gives that metadata to the events of a partitioned output only;
`log_materializations` gives it to events an asset records itself (the batch's frames, which name only the
companies the run processed). dagster-postgres writes a batch in one statement; `HeldSqliteEventLogStorage` writes
it in one transaction per database. 500 frame events then cost ~0.45 ms each instead of ~2.2 ms (batches of 20,
alone on the machine).
"""

import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.events import (
    DagsterEvent,
    DagsterEventBatchMetadata,
    DagsterEventType,
)
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from dagster_postgres.auth import PgTokenProvider
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy.engine import Connection, Engine

# Run shards whose connection stays open: the run being written, and a few a long-lived process (the webserver,
# the daemon) reads repeatedly. Each holds a file handle; older ones are closed.
OPEN_RUN_SHARDS = 4

# An event the step has logged already (`log_materializations`); an asset yields it as it is.
LoggedEvent = DagsterEvent

# The asset events a batch is written for in one transaction per database (what dagster-postgres batches too).
BATCHED_EVENT_TYPES = frozenset({DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION})


class HeldSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that keeps its databases' connections open between writes (see the module)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "HeldSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine, created once; the least recently used run shards beyond OPEN_RUN_SHARDS close."""
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = db.create_engine(
            self.conn_string_for_shard(shard),
            # One connection stays open: every use is under the storage's lock (`_connect`). Creating a shard's
            # tables opens a few more at once (Dagster's `_initdb`); those close when returned.
            poolclass=db.pool.QueuePool,
            pool_size=1,
            max_overflow=4,
            # The connection moves between the threads that take the lock.
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        self._engines[shard] = engine
        run_shards = [s for s in self._engines if s != INDEX_SHARD_NAME]
        for stale in run_shards[:-OPEN_RUN_SHARDS]:
            self._engines.pop(stale).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # As Dagster's own `_connect` (one transaction, the storage's lock held), on the shard's open connection.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn
                if shard != INDEX_SHARD_NAME:
                    # Move the write into the .db file that the webserver watches (see the module).
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        """A batch of materializations or observations in one transaction per database, holding what storing each
        event would (`store_event`); any other batch is stored event by event, as Dagster's own SQLite storage
        does."""
        if not events or any(e.dagster_event_type not in BATCHED_EVENT_TYPES for e in events):
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(event) for event in events]
        by_run: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_run[row["run_id"]].append(row)
        for run_id, run_rows in by_run.items():
            with self.run_connection(run_id) as conn:
                conn.execute(SqlEventLogStorageTable.insert(), run_rows)
        with self.index_transaction() as conn:
            # The cross-run index's ids, in the events' order: its tags and asset rows point at them.
            inserted = conn.execute(
                SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True),
                rows,
            )
            ids = [int(row[0]) for row in inserted]
            self._store_asset_event_tags(conn, events, ids)
            # Each asset's row records its latest event: storing the events one by one would leave the last one.
            latest = {event.dagster_event.asset_key: (event, id_) for event, id_ in zip(events, ids, strict=True)}  # type: ignore[union-attr]
            for event, id_ in latest.values():
                self._store_asset_event(conn, event, id_)

    def _close_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._close_engines()  # the run shards' files are deleted: no connection may outlive them
        super().wipe()

    def dispose(self) -> None:
        super().dispose()  # first: stops the file watch, whose thread reads through `_connect`
        self._close_engines()


# Connections of a process beyond the one held, while several threads write at once; closed when returned.
POSTGRES_OVERFLOW = 4
POSTGRES_RECYCLE_S = 3600  # replace a connection after an hour, before a server or proxy timeout would


class HeldPostgresEventLogStorage(PostgresEventLogStorage):
    """`PostgresEventLogStorage` that keeps one connection open between writes (see the module)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            postgres_url,
            token_provider,
            isolation_level="AUTOCOMMIT",  # as Dagster's own engine: each statement commits
            poolclass=db.pool.QueuePool,
            pool_size=1,
            max_overflow=POSTGRES_OVERFLOW,
            pool_pre_ping=True,
            pool_recycle=POSTGRES_RECYCLE_S,
        )

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "HeldPostgresEventLogStorage":
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()


def log_materializations(
    context: dg.AssetExecutionContext, materializations: Sequence[dg.AssetMaterialization]
) -> list[LoggedEvent]:
    """Record `materializations` as one batch: Dagster stores them in one call to the event log storage (see the
    module) once the last is logged, so the UI shows them together, as it would a partitioned output's.

    The asset yields the returned events: they are logged already, and Dagster passes a logged event on as it is.
    This is what the step does with an `AssetMaterialization` it is given (`DagsterEvent.asset_materialization`),
    plus the batch's metadata, which Dagster's public API gives only to a partitioned output's events. Build the
    materializations first: a batch cut short by an error would not be stored.
    """
    step = context.get_step_execution_context()
    batch_id, last = str(uuid.uuid4()), len(materializations) - 1  # as Dagster's own batch ids
    return [
        DagsterEvent.asset_materialization(step, m, DagsterEventBatchMetadata(batch_id, i == last))
        for i, m in enumerate(materializations)
    ]
