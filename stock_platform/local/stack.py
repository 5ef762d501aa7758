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
from contextlib import contextmanager, suppress
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
    """Start moto in server mode (real HTTP, the same wire protocol boto3 speaks to AWS), on connections that stay
    open between requests as S3's do (moto_http.py).

    Its own session keeps a terminal's Ctrl-C away from it, so it is still serving while the process that
    started it cleans up, and `MotoServer.stop` can take the whole group down. `timeout` only bounds a hang.
    """
    port = port or free_port()
    with open(log_path, "ab") if log_path else open(os.devnull, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stock_platform.local.moto_http", "--host", "127.0.0.1", "--port", str(port)],
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
    return _endpoint_answers(server.endpoint)


def _endpoint_answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
            return True
    except OSError:
        return False


# The local stack's AWS endpoint outlives the command that started it, so what `make run` wrote (the extract, the
# rejects, the frames the UI links to) can still be opened afterwards; `make stop` ends it. Its pid and endpoint
# are recorded here, inside the stack's folder.
MOTO_STATE_FILE = "moto.json"


@contextmanager
def _folder_lock(local_dir: Path) -> Iterator[None]:
    """One command at a time decides whether to start the background endpoint (make run and make ui at once)."""
    import fcntl  # noqa: PLC0415 - POSIX only, like the rest of the local stack

    local_dir.mkdir(parents=True, exist_ok=True)
    with open(local_dir / "stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def running_moto(local_dir: Path | None = None) -> tuple[int, str] | None:
    """(pid, endpoint) of the local stack's background moto, if it is running and answering."""
    state_path = (local_dir or LOCAL_DIR) / MOTO_STATE_FILE
    try:
        state = json.loads(state_path.read_text())
        pid, endpoint = int(state["pid"]), str(state["endpoint"])
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ProcessLookupError, PermissionError):
        return None
    return (pid, endpoint) if _endpoint_answers(endpoint) else None


def ensure_moto(local_dir: Path | None = None) -> str:
    """The endpoint of the local stack's moto: the one already running in the background, or a new one.

    A new one runs in a session of its own (see `start_moto`), so it survives the command that started it, a
    terminal's Ctrl-C included; `stop_local_stack` (`make stop`) ends it. Its state lives in memory only: after
    `make stop` (or a reboot) the next command starts from an empty S3 and uploads the sample again.
    """
    local_dir = local_dir or LOCAL_DIR
    with _folder_lock(local_dir):
        found = running_moto(local_dir)
        if found is not None:
            return found[1]
        server = start_moto(log_path=local_dir / "moto.log")
        state = {"pid": server.process.pid, "endpoint": server.endpoint}
        (local_dir / MOTO_STATE_FILE).write_text(json.dumps(state))
        return server.endpoint


def stop_local_stack(local_dir: Path | None = None, timeout: float = 10.0) -> list[str]:
    """`make stop`: end the background moto and the embedded PostgreSQL (unless a running command still uses it).

    Returns what was stopped, for the user.
    """
    local_dir = local_dir or LOCAL_DIR
    stopped = []
    with _folder_lock(local_dir):
        found = running_moto(local_dir)
        state_path = local_dir / MOTO_STATE_FILE
        if found is not None:
            pid, endpoint = found
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            _signal_group(pid, signal.SIGKILL)
            stopped.append(f"moto at {endpoint} (pid {pid})")
        state_path.unlink(missing_ok=True)
    data_dir = _resolved(local_dir / "pgdata")
    if running_postmaster(data_dir) is not None:
        stop_pgserver(data_dir)
        still = running_postmaster(data_dir)
        stopped.append(
            f"PostgreSQL of {data_dir}" if still is None else f"nothing of PostgreSQL (pid {still.pid} still in use)"
        )
    return stopped


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of ours that exited stays as a zombie until reaped; it no longer serves.
    with suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


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
def local_stack(database_url: str | None = None) -> Iterator[dict[str, str]]:
    """Reach the background moto (starting it if needed) and start pgserver unless `database_url` is given; yield
    the environment that points at them.

    Whatever ends the block (its end, an exception, KeyboardInterrupt) leaves PostgreSQL (its data stays on disk);
    moto keeps running with its state until `make stop`.
    """
    with _database(database_url) as url:
        yield {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": ensure_moto(LOCAL_DIR), "STOCK_PLATFORM_DATABASE_URL": url}


@contextmanager
def ephemeral_stack(log_dir: Path, database_url: str | None = None) -> Iterator[dict[str, str]]:
    """Like `local_stack`, with a moto of its own that stops with the block: for the benchmark, which must not
    measure (or fill) the stack a user keeps."""
    log_dir.mkdir(parents=True, exist_ok=True)
    moto = start_moto(log_path=log_dir / "moto.log")
    try:
        with _database(database_url) as url:
            yield {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": moto.endpoint, "STOCK_PLATFORM_DATABASE_URL": url}
    finally:
        moto.stop()


@contextmanager
def _database(database_url: str | None) -> Iterator[str]:
    """`database_url`, or the embedded PostgreSQL of the stack's folder for the block's duration."""
    if database_url is not None:
        yield database_url
        return
    data_dir = LOCAL_DIR / "pgdata"
    try:
        yield start_pgserver(data_dir)
    finally:
        # Also when the start itself was interrupted: the server may be up without us on its list.
        stop_pgserver(data_dir)


# The local Dagster instance: SQLite storage under .local/ (the production instance is the repository's
# dagster.yaml, on PostgreSQL), its event log kept open between writes (stock_platform/event_log.py). The sensor
# runs when the daemon runs, as in production.
LOCAL_INSTANCE_YAML = """\
# Written by `make run` / `make ui`: the local instance. Production uses the repository's dagster.yaml.
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1  # as production's dagster.yaml, which says why
    tag_concurrency_limits:
      - key: stock_platform/target
        limit: 1
event_log_storage:
  module: stock_platform.event_log
  class: HeldSqliteEventLogStorage
  config:
    base_dir: {event_logs}
"""


def local_instance_yaml(dagster_home: str | os.PathLike[str]) -> str:
    """The local instance's dagster.yaml for `dagster_home` (the event log's folder is where Dagster's default
    SQLite storage keeps it; quoted as JSON, which YAML reads, so any path is one string)."""
    return LOCAL_INSTANCE_YAML.format(event_logs=json.dumps(str(Path(dagster_home).resolve() / "history" / "runs")))


def write_local_instance(dagster_home: str | os.PathLike[str]) -> Path:
    home = Path(dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    text = local_instance_yaml(home)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
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
