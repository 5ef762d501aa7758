"""The embedded local stack: moto's S3/SNS/SQS server on 127.0.0.1 and an embedded PostgreSQL (pgserver).

Dev tooling only, never imported by definitions.py. Nothing here needs Docker, AWS credentials or a database
installed by hand: both servers come from pip wheels and live under the project-local `.local/` folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    import psutil  # type: ignore[import-untyped]  # ships no type information

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
        port: int = s.getsockname()[1]
        return port


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    endpoint: str

    def stop(self, timeout: float = 10.0) -> None:
        """Stop moto and anything it spawned: it runs in its own process group (see `start_moto`)."""
        stop_process_group(self.process, timeout)


def stop_process_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group `process` leads, SIGKILL it after `timeout` s; also reaps the leader.

    The group is signalled even when the leader has already exited: children it left behind still carry its
    group id and would otherwise outlive the stack.
    """
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
    _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError):  # nobody left in the group
        os.killpg(pgid, signum)


def start_moto(port: int | None = None, log_path: Path | None = None, timeout: float = 120.0) -> MotoServer:
    """Start moto in server mode (real HTTP, the same wire protocol boto3 speaks to AWS).

    Its own session keeps a terminal's Ctrl-C away from it, so it is still serving while the process that
    started it cleans up, and `MotoServer.stop` can take the whole group down. `timeout` only bounds a hang.
    """
    port = port or free_port()
    with open(log_path, "ab") if log_path else open(os.devnull, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MotoServer(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + timeout
        while not _answers(server):
            if time.monotonic() > deadline:
                raise TimeoutError(f"moto server did not answer on {server.endpoint} within {timeout:.0f}s")
            time.sleep(0.1)
    except BaseException:
        # Interrupted or failed while starting: the caller never gets a handle to stop it with.
        server.stop()
        raise
    return server


def _answers(server: MotoServer) -> bool:
    if server.process.poll() is not None:
        raise RuntimeError(f"moto server exited with code {server.process.returncode}")
    try:
        with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1):
            return True
    except OSError:
        return False


# pgserver and psutil (which comes with it) are the `local` extra's: imported where a server is started or
# stopped, so the rest of this module (PROJECT_ROOT, moto, the notification sink) imports without them.


def start_pgserver(data_dir: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir`; return a SQLAlchemy URL for it.

    pgserver counts the processes using a server in `<data_dir>/.handle_pids.json` and stops it when the last
    one leaves, by `stop_pgserver` or at interpreter exit; its data stays in `data_dir`, so a second `make run`
    finds the table it left. A process that died without leaving (SIGKILL, a crash) would stay on that list
    and keep every later server running, so dead processes are dropped from it first.
    """
    import pgserver.postgres_server  # noqa: PLC0415 - the local extra, see above

    data_dir = _resolved(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with pgserver.postgres_server.PostgresServer._lock:
        _live_users(data_dir)
    server = pgserver.postgres_server.get_server(data_dir)
    # pgserver keeps its own reference too; this one is what `stop_pgserver` releases.
    _PGSERVERS[data_dir] = server
    uri: str = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def stop_pgserver(data_dir: Path | None = None, timeout: float = 60.0) -> None:
    """Leave the server in `data_dir`; stop it unless another live process still uses it.

    Safe to call when `start_pgserver` was interrupted (the server may be up without this process on its
    list) or never called: a server that no live process uses is stopped either way. `timeout` only bounds
    a server that does not stop: it is then killed.
    """
    import pgserver.postgres_server  # noqa: PLC0415 - the local extra, see above
    import psutil  # noqa: PLC0415 - the local extra, see above

    data_dir = _resolved(data_dir)
    _PGSERVERS.pop(data_dir, None)
    # pgserver caches one handle per folder and would hand it back to a later start in this process without
    # registering the process again.
    pgserver.postgres_server.PostgresServer._instances.pop(data_dir, None)
    # The lock pgserver holds while it starts a server and registers a user: no one joins while we decide.
    with pgserver.postgres_server.PostgresServer._lock:
        if _live_users(data_dir, leaving=os.getpid()):
            return
        postmaster = running_postmaster(data_dir)
        if postmaster is None:
            return
        # SIGINT is PostgreSQL's "fast" shutdown: sessions are rolled back and the server exits cleanly,
        # removing postmaster.pid (https://www.postgresql.org/docs/current/server-shutdown.html).
        postmaster.send_signal(signal.SIGINT)
        try:
            postmaster.wait(timeout)
        except psutil.TimeoutExpired:
            postmaster.kill()
            postmaster.wait(timeout)


def running_postmaster(data_dir: Path) -> psutil.Process | None:
    """The PostgreSQL server process serving `data_dir`, from its postmaster.pid, if it is running.

    The pid in the file is trusted only if that process is a postgres serving this very folder: a crashed
    server leaves the file behind, and its pid may since belong to something else.
    """
    import psutil  # noqa: PLC0415 - the local extra, see above

    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        process = psutil.Process(pid)
        if process.name() == "postgres" and str(data_dir.resolve()) in process.cmdline():
            return process
    except (FileNotFoundError, IndexError, ValueError, psutil.Error):
        pass
    return None


def _live_users(data_dir: Path, leaving: int | None = None) -> list[int]:
    """Rewrite pgserver's list of the server's users without dead processes (and `leaving`); return it.

    Call with pgserver's lock held: every process sharing the folder reads and writes the list under it.
    """
    import psutil  # noqa: PLC0415 - the local extra, see above

    def alive(pid: int) -> bool:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    path = data_dir / ".handle_pids.json"
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except FileNotFoundError:
        return []
    live = [p for p in pids if p != leaving and alive(p)]
    if live != pids:
        path.write_text(json.dumps(live))
    return live


def _resolved(data_dir: Path | None) -> Path:
    # pgserver keys its handles by the resolved path; so do we.
    return (data_dir or LOCAL_DIR / "pgdata").expanduser().resolve()


_PGSERVERS: dict[Path, Any] = {}


@contextmanager
def local_stack(database_url: str | None = None, log_dir: Path | None = None) -> Iterator[dict[str, str]]:
    """Start moto (and pgserver unless `database_url` is given); yield the environment that points at them.

    Whatever ends the block (its end, an exception, KeyboardInterrupt) stops what it started.
    """
    log_dir = log_dir or LOCAL_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as started:
        moto = start_moto(log_path=log_dir / "moto.log")
        started.callback(moto.stop)
        if database_url is None:
            data_dir = LOCAL_DIR / "pgdata"
            # Registered before the start, so an interrupted start is stopped too.
            started.callback(stop_pgserver, data_dir)
            database_url = start_pgserver(data_dir)
        yield {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": moto.endpoint, "STOCK_PLATFORM_DATABASE_URL": database_url}


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

    def receive(self, wait_seconds: int = 1, max_messages: int = 10) -> list[dict[str, Any]]:
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
