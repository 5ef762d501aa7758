"""The embedded local stack: moto's S3/SNS/SQS server on 127.0.0.1 and an embedded PostgreSQL (pgserver).

Dev tooling only, never imported by definitions.py. Nothing here needs Docker, AWS credentials or a database
installed by hand: both servers come from pip wheels and live under the project-local `.local/` folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import boto3

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = Path(os.environ.get("STOCK_PLATFORM_LOCAL_DIR", PROJECT_ROOT / ".local"))

# Credentials moto accepts; they only ever reach the local endpoint.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MotoServer:
    process: subprocess.Popen
    endpoint: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_moto(port: int | None = None, log_path: Path | None = None, timeout: float = 30.0) -> MotoServer:
    """Start moto in server mode (real HTTP, the same wire protocol boto3 speaks to AWS)."""
    port = port or free_port()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with code {process.returncode}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).read()
            return MotoServer(process, endpoint)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"moto server did not answer on {endpoint} within {timeout:.0f}s")


def start_pgserver(data_dir: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir`; return a SQLAlchemy URL for it.

    The server is stopped when the last process using it exits (pgserver's reference counting); its data
    stays in `data_dir`, so a second `make run` finds the table it left.
    """
    import pgserver

    data_dir = data_dir or LOCAL_DIR / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir))
    # Keep a reference for the life of the process: pgserver stops the server when it is collected.
    _PGSERVERS.append(server)
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


_PGSERVERS: list[object] = []


@contextmanager
def local_stack(database_url: str | None = None, log_dir: Path | None = None) -> Iterator[dict[str, str]]:
    """Start moto (and pgserver unless `database_url` is given); yield the environment that points at them."""
    log_dir = log_dir or LOCAL_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    moto = start_moto(log_path=log_dir / "moto.log")
    try:
        env = {
            **FAKE_AWS_ENV,
            "AWS_ENDPOINT_URL": moto.endpoint,
            "STOCK_PLATFORM_DATABASE_URL": database_url or start_pgserver(),
        }
        yield env
    finally:
        moto.stop()


# The local Dagster instance: SQLite storage under .local/ (the production instance is the repository's
# dagster.yaml, on PostgreSQL). The sensor runs when the daemon runs, as in production.
LOCAL_INSTANCE_YAML = """\
# Written by `make run` / `make ui`: the local instance. Production uses the repository's dagster.yaml.
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    tag_concurrency_limits:
      - key: stock_platform/target
        limit: 1
"""


def write_local_instance(dagster_home: str | os.PathLike[str]) -> Path:
    home = Path(dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    if not path.exists() or path.read_text() != LOCAL_INSTANCE_YAML:
        path.write_text(LOCAL_INSTANCE_YAML)
    return path


@dataclass
class NotificationSink:
    """An SNS topic with an SQS queue subscribed to it: how the local stack (and the tests) see notifications."""

    topic_arn: str
    queue_url: str

    def receive(self, wait_seconds: int = 1, max_messages: int = 10) -> list[dict]:
        """Delivered SNS envelopes (Subject, Message, MessageAttributes), deleted from the queue once read."""
        sqs = boto3.client("sqs")
        response = sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds
        )
        envelopes = []
        for message in response.get("Messages", []):
            envelopes.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return envelopes


def create_notification_sink(name: str = "stock-platform-notifications") -> NotificationSink:
    """Create the topic and a queue subscribed to it, the way an AWS user checks SNS delivery."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return NotificationSink(topic_arn, queue_url)
