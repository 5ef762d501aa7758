"""The local stack's moto server (stock_platform/local/moto_http.py): S3's behaviour where a client can see it."""

import http.client
from urllib.parse import urlparse

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from stock_platform.local.moto_http import _Dispatcher


def test_a_connection_stays_open_between_requests(moto_endpoint) -> None:
    # Werkzeug's server, which `python -m moto.server` uses, answered every request with `Connection: close`.
    endpoint = urlparse(moto_endpoint)
    conn = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=30)
    try:
        for _ in range(3):
            conn.request("GET", "/moto-api/")  # moto's dashboard: a request any client may make
            response = conn.getresponse()
            assert (response.status, len(response.read()) > 0) == (200, True)
            assert not response.will_close, response.getheader("Connection")
            assert conn.sock is not None  # http.client drops a socket the server said it closes
    finally:
        conn.close()


def test_user_metadata_names_come_back_as_sent(stack) -> None:
    # S3 keeps metadata names in lower case and keeps underscores; WSGI folds `_` into `-` and a server may
    # title-case response headers, either of which would change the names a reader looks up.
    metadata = {"table-version": "7", "row_count": "12", "header": "true"}
    stack.s3.put_object(Bucket=stack.bucket, Key="meta.txt", Body=b"x", Metadata=metadata)

    assert stack.s3.head_object(Bucket=stack.bucket, Key="meta.txt")["Metadata"] == metadata


def test_a_key_with_encoded_characters_is_the_key_sent(stack) -> None:
    key = "Stocks/odd name+1%2F é.us.txt"
    stack.put(key, b"Date,Open\n")

    assert stack.keys("Stocks/") == [key]
    assert stack.get(key) == b"Date,Open\n"


def test_the_dispatcher_resolves_each_host_as_moto_does_and_once(monkeypatch) -> None:
    hosts = [
        None,
        "moto_api",
        "s3",
        "s3.us-east-1.amazonaws.com",
        "bucket.s3.eu-west-1.amazonaws.com",
        "sns.eu-west-1.amazonaws.com",
        "sqs.us-east-1.amazonaws.com",
        "kinesis.us-east-1.amazonaws.com",
        "iam.amazonaws.com",
        "cloudformation.us-east-1.amazonaws.com",
        "events.us-east-1.amazonaws.com",
    ]
    moto_own = DomainDispatcherApplication(create_backend_app)
    expected = [moto_own.get_backend_for_host(h) for h in hosts]
    resolved: list[str | None] = []
    original = DomainDispatcherApplication.get_backend_for_host

    def counted(self, host):
        resolved.append(host)
        return original(self, host)

    monkeypatch.setattr(DomainDispatcherApplication, "get_backend_for_host", counted)
    dispatcher = _Dispatcher()

    assert [dispatcher.get_backend_for_host(h) for h in hosts + hosts] == expected + expected
    assert "s3" in expected and "sns" in expected  # the hosts reach real backends, not all None
    assert resolved == hosts  # the second round was remembered
