"""boto3 clients, one per configuration and process.

Building a client parses its service's model (S3's alone takes ~0.3 s), and each resource instance used to build
its own: every sensor tick and every run paid it again (a quote tick built a Kinesis client, its run an S3 and an
SNS client: ~3 s of a 100,000-quote benchmark). Clients are thread-safe and meant to be long-lived. The cache key is
everything that shapes a client: the service, the explicit arguments and the `AWS_*` environment boto3 reads
(endpoint, region, profile, credentials), so a changed environment gets a client of its own.
"""

import os
import threading
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config

_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def client(
    service: str, *, profile_name: str | None = None, config: Mapping[str, Any] | None = None, **arguments: Any
) -> Any:
    """The process's client for `service` with these arguments (boto3's `Session(profile_name).client(service,
    config=Config(**config), **arguments)`), built on first use."""
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (service, profile_name, repr(sorted((config or {}).items())), repr(sorted(arguments.items())), environment)
    with _lock:
        if key not in _clients:
            session = boto3.session.Session(profile_name=profile_name)
            _clients[key] = session.client(service, config=Config(**config) if config else None, **arguments)
        return _clients[key]
