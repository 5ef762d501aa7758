"""A threading HTTP server that, once closed, leaves no thread behind: what the local fakes serve with."""

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Bounds the wait for a connection's thread once its socket is shut down; it ends at once unless its handler hangs.
JOIN_TIMEOUT_S = 10


class LoopbackServer(ThreadingHTTPServer):
    """`ThreadingHTTPServer` whose `server_close` also ends the connections clients keep alive, and their threads.

    Each connection has a daemon thread, and one a client keeps open (boto3 and requests pool them) waits in `recv`
    past `shutdown()` and `server_close()`. When that socket was only closed while the interpreter exited, its
    thread woke into a finalizing interpreter: the test process crashed (a segfault in the GIL hand-over) after
    pytest had reported every test passed. Closing now shuts every open connection down and joins its thread.
    """

    daemon_threads = True  # a server never closed still never blocks the interpreter's exit

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._lock = threading.Lock()
        self._connections: dict[Any, threading.Thread] = {}

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections[request] = threading.current_thread()
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.pop(request, None)

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            connections = list(self._connections.items())
        for request, _ in connections:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)  # the handler's read returns: its thread finishes
        for _, thread in connections:
            thread.join(JOIN_TIMEOUT_S)
