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
"""

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
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
