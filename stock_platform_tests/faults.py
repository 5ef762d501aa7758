"""Fault injectors for the fault tests: a flaky HTTP proxy in front of moto, and PostgreSQL helpers."""

import http.client
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FlakyProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


SLOW_TRIGGER = """
CREATE FUNCTION {schema}.slow_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.company_name = '{company}' THEN PERFORM pg_sleep({seconds}); END IF; RETURN NEW; END $$;
CREATE TRIGGER slow_{name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {schema}.slow_{name}();
"""


def slow_down(stack, company: str, seconds: float, name: str = "load") -> None:
    """Make the load of one company's first row take `seconds` inside COPY (once per row: keep the file short)."""
    with stack.connect() as conn:
        conn.execute(SLOW_TRIGGER.format(schema=f'"{stack.schema}"', table=f'"{stack.schema}"."{stack.table}"',
                                         company=company, seconds=seconds, name=name))


def copy_backends(stack) -> list[int]:
    """PIDs of backends running a COPY into the test schema right now."""
    with stack.connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'COPY%%' AND query LIKE %s AND state = 'active'",
            (f'%{stack.schema}%',),
        ).fetchall()
    return [r[0] for r in rows]


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
