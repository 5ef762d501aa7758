"""moto's AWS server application, served over HTTP/1.1 connections that stay open between requests.

`python -m moto.server` serves moto with Werkzeug's development server, which answers every request with
`Connection: close`. So against the local stack each S3 request paid a new TCP connection on both sides and a new
server thread, which real S3 does not charge: boto3 keeps its connections open and reuses them. 1,000 PUTs and GETs
of 60 KB objects from 16 threads took 2.35-2.39 s here instead of 2.95-2.98 s, with 0.2 s less CPU in the client
and 0.5 s less in the server; a batch run of 500 companies makes about 1,000 such requests.

This serves the same application object `moto.server` builds (every service, the `/moto-api/` endpoints, one
in-memory state) with cheroot, CherryPy's multi-threaded WSGI server, which keeps connections alive and writes
response headers as the application spelled them (S3's lower-case `x-amz-meta-*` names come back as sent). What
moto's own request handler adds to Werkzeug's is done here too (`_MotoGateway`): the raw request path moto matches
S3 keys against, and the spelling of user-metadata names holding an underscore, which WSGI folds into a dash.
And `MOTO_PORT`, which moto reads to write its own URLs (queue URLs, subscription endpoints).

moto's dispatcher finds a request's service anew for every request, under one lock for the whole server: it lists
moto's package folder (~200 `isdir` calls) and tries its URL patterns one by one. That was half the server's CPU:
1,000 PUTs and 1,000 GETs of 60 KB from 16 threads cost it 3.4-4.3 CPU-s, 2.0-2.5 once each service's backend is
remembered (`_Dispatcher`). The answer depends only on the service's host name, and the folder and the patterns
are fixed for the life of the process, so remembering it changes no answer.

`python -m stock_platform.local.moto_http --port N` (the local stack starts it: stack.start_moto).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from cheroot import wsgi
from moto.core.request import (
    PRESERVED_HEADER_NAMES_ENVIRON_KEY,
    environ_key_for_header,
    should_preserve_original_header_name,
)
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

# A request holds a worker thread while it is served, and one that waits on the server holds it longer (an SQS
# long poll, up to 20 s); an open connection between requests holds none (cheroot watches it with a selector).
# More than a busy local stack has in flight at once: a run's 16 S3 threads, the daemon's sensors, a test's own.
THREADS = 64
# A connection idle this long is closed; boto3 opens a new one when it next needs it.
IDLE_SECONDS = 30


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering the backend of each host name it has resolved (see the module)."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        # Called under the dispatcher's lock (`get_application`): one thread at a time reads and fills the dict.
        if host not in self._backends:
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


class _MotoGateway(wsgi.Gateway_10):
    """The WSGI environ moto's own request handler (`moto.moto_server.werkzeug_app.MotoRequestHandler`) builds."""

    # cheroot's stubs declare the base class's get_environ as returning None; Gateway_10's returns the environ.
    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]
        environ: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
        # Werkzeug's name for the request target as it arrived, before percent-decoding.
        environ.setdefault("RAW_URI", environ["REQUEST_URI"])
        names = [name.decode("latin-1") for name in self.req.inheaders]
        dashed = {environ_key_for_header(name) for name in names if "_" not in name}
        environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = {
            environ_key_for_header(name): name
            for name in names
            # As moto's handler: an underscored name never stands in for a dashed one.
            if should_preserve_original_header_name(name) and environ_key_for_header(name) not in dashed
        }
        return environ


def server(host: str, port: int) -> wsgi.Server:
    served = wsgi.Server(
        (host, port),
        _Dispatcher(),
        numthreads=THREADS,
        request_queue_size=128,
        timeout=IDLE_SECONDS,
    )
    served.gateway = _MotoGateway
    return served


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stock_platform.local.moto_http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # before moto builds a URL
    served = server(args.host, args.port)
    try:
        served.start()  # serves until the process is stopped
    finally:
        served.stop()


if __name__ == "__main__":
    main()
