"""The local fakes' HTTP server leaves no thread behind once closed, even for a connection a client keeps open."""

import http.client
import threading
from http.server import BaseHTTPRequestHandler

from stock_platform.local.loopback import LoopbackServer


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's and requests' pooled connections

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_closing_ends_the_connections_clients_keep_alive_and_their_threads() -> None:
    server = LoopbackServer(("127.0.0.1", 0), Hello)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    client = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
    client.request("GET", "/")
    assert client.getresponse().read() == b"ok"  # the connection stays open in the client, its thread waits
    handlers = [t for t in threading.enumerate() if "process_request_thread" in t.name]
    assert handlers
    server.shutdown()
    server.server_close()
    serving.join()
    assert not [t for t in handlers if t.is_alive()]  # no thread left to wake into a finalizing interpreter
    client.close()
