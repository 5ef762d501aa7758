"""The local instance's event log: Dagster's SQLite storage, with each database's connection kept open.

Dagster's `SqliteEventLogStorage` builds a new engine and opens a new connection for every write, and closing the
last connection to a WAL database checkpoints it. A materialization is written to two databases (the run's shard
and the cross-run index), so each one cost ~5 ms here (two engines, two connections, two commits, two
checkpoints), and a batch run records one per processed company: recording them was the longest task of a run.
This storage keeps one connection per database (the index and the few most recent run shards) and checkpoints a
run's shard after each write instead of reopening it: ~2 ms per event, with the same tables, files and
durability (every commit is still synced).

The checkpoint is what keeps the UI live: Dagster's webserver follows a running run by watching its shard's
`.db` file for changes, and a write that stayed in the `-wal` file would not show until the run ended.

Production uses PostgreSQL storage (the repository's dagster.yaml) and never loads this module.
"""

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
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
        self._close_engines()
        super().dispose()
