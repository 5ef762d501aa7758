"""Fault injectors for the fault tests: a flaky HTTP proxy in front of moto, and PostgreSQL locks a test holds
to stop a load at a known point (never a timer), with the queries that show where it stopped."""

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlparse

import psycopg

from stock_platform.batch.warehouse import Target
from stock_platform.local.loopback import LoopbackServer


class FlakyProxy:
    """Forwards HTTP to `target`; `fault(method, path, n)` may return a status to answer instead, or a delay.

    `n` counts requests. The proxy speaks plain HTTP/1.1 and keeps nothing between requests.
    """

    def __init__(self, target: str, fault: Callable[[str, str, int], int | float | None]) -> None:
        self.target = urlparse(target)
        self.fault = fault
        self.count = 0
        self.injected = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.count += 1
                    n = proxy.count
                action = proxy.fault(self.command, self.path, n)
                if isinstance(action, float):
                    time.sleep(action)
                elif isinstance(action, int):
                    with proxy._lock:
                        proxy.injected += 1
                    payload = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                    if action == 503:
                        payload = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                    self.send_response(action)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = LoopbackServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FlakyProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def holding_table_lock(stack) -> Iterator[psycopg.Connection]:
    """Hold the table's load lock (the advisory lock every load takes) in an open transaction, as a load would."""
    with stack.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (table_lock_key(stack),))
        yield conn


def table_lock_key(stack) -> str:
    return Target(stack.schema, stack.table).lock_key


def waiting_for_table_lock(stack) -> list[int]:
    """Backends waiting for the table's load lock right now."""
    with stack.connect() as conn:
        return lock_waiters(conn, table_lock_key(stack))


def lock_waiters(conn: psycopg.Connection, key: str) -> list[int]:
    """Backends waiting for the advisory lock on `hashtextextended(key, 0)`, the key the warehouse locks."""
    # An advisory lock on one bigint key shows in pg_locks as its high and low 32 bits (classid, objid), objsubid 1.
    query = """
        SELECT pid FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
          AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(%s, 0)
    """
    return [r[0] for r in conn.execute(query, (key,)).fetchall()]


@contextmanager
def holding_row(stack, company: str, stock_date: str) -> Iterator[int]:
    """Insert a row with this key in a transaction left open: a load writing the same key waits for it.

    Yields the holding backend's pid; the row is rolled back at the end. The row copies an existing row's values,
    so it satisfies whatever the table's columns require.
    """
    with stack.connect() as conn, conn.transaction(force_rollback=True):
        conn.execute(f"CREATE TEMP TABLE blocking_row ON COMMIT DROP AS SELECT * FROM {table(stack)} LIMIT 1")
        conn.execute("UPDATE blocking_row SET company_name = %s, stock_date = %s", (company, stock_date))
        conn.execute(f"INSERT INTO {table(stack)} SELECT * FROM blocking_row")
        yield conn.info.backend_pid


def blocked_by(stack, pid: int) -> list[tuple[int, str]]:
    """(pid, query) of the backends waiting for a lock that backend `pid` holds."""
    with stack.connect() as conn:
        return conn.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (pid,)
        ).fetchall()


def backend_exists(stack, pid: int) -> bool:
    with stack.connect() as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0])


def table(stack) -> str:
    return f'"{stack.schema}"."{stack.table}"'
