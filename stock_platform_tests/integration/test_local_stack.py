"""`make run`, `make ui` and `make stop` as a user runs and stops them.

Each test starts `python -m stock_platform.local ...` in its own process group with its `.local` folder in a
temporary directory. Stopped the ways a user stops them (a terminal's Ctrl-C, SIGINT, or `kill -TERM -<pgid>`),
whatever the command started stops with it (dg dev and the webserver, daemon and code servers under it, the
PostgreSQL server of its data folder, which pg_ctl detaches, so it is found through postmaster.pid), except the
local S3 endpoint, which keeps what the command wrote until `make stop` ends it. Between commands the stack
remembers: a second `make run` uploads nothing, changes nothing, and every link it prints still opens.
"""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psutil
import psycopg
import pytest

from stock_platform.batch.warehouse import Target
from stock_platform.local.stack import (
    free_port,
    running_moto,
    running_postmaster,
    start_pgserver,
    stop_local_stack,
    stop_pgserver,
    write_local_instance,
)
from stock_platform_tests.conftest import psycopg_dsn
from stock_platform_tests.faults import lock_waiters
from stock_platform_tests.processes import command_lines, descendants, group_members, signal_group, start, survivors
from stock_platform_tests.waiting import wait_until

pytestmark = pytest.mark.integration
# Bounds on waits for something that must happen; reached only if it never does (a hang), never on a slow machine.
HANG_S = 600
STOPS = pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
SCHEMA, TABLE = "public", "historical_stocks_data"
# What make ui runs under it: dg dev with its webserver and daemon, the quote producer (moto runs in a session of
# its own).
UI_PROCESSES = ("dg dev", "dagster_webserver", "dagster._daemon", "stock_platform.quotes.producer")


def local_env(local_dir: Path) -> dict[str, str]:
    """The environment of a fresh checkout: nothing of the test session's stack; `.local` is `local_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_PLATFORM_", "AWS_", "DAGSTER_", "PG"))}
    return env | {
        "STOCK_PLATFORM_LOCAL_DIR": str(local_dir),
        "STOCK_PLATFORM_DB_SCHEMA": SCHEMA,
        "STOCK_PLATFORM_TABLE": TABLE,
    }


@dataclass
class Local:
    """A running `python -m stock_platform.local <command>` and what the test saw it start."""

    process: subprocess.Popen
    log: Path
    started: list[psutil.Process] = field(default_factory=list)

    def alive_until(self, condition: Callable[[], object]) -> Callable[[], object]:
        """`condition`, failing at once (with the command's output) if the command exits before it holds."""

        def check() -> object:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            return condition()

        return check

    def stop_and_check(self, signum: int, data_dir: Path) -> None:
        """Signal the group as a user would; then nothing it started may be left running, PostgreSQL included,
        but the local S3 endpoint, which `make stop` then ends."""
        moto = running_moto(data_dir.parent)
        assert moto is not None
        self.started = [p for p in descendants(self.process) if p.pid != moto[0]]
        postmaster = running_postmaster(data_dir)
        assert postmaster is not None
        signal_group(self.process, signum)
        assert self.process.wait(HANG_S) == 128 + signum, self.log.read_text()[-3000:]  # stopped through its cleanup
        assert survivors(self.started) == []
        assert group_members(self.process.pid) == []
        assert not postmaster.is_running()
        assert running_postmaster(data_dir) is None and not (data_dir / "postmaster.pid").exists()
        assert json.loads((data_dir / ".handle_pids.json").read_text()) == []
        assert running_moto(data_dir.parent) == moto  # still serving what the command wrote
        make_stop(data_dir.parent)
        assert not psutil.pid_exists(moto[0]) and running_moto(data_dir.parent) is None


@contextmanager
def local(command: str, local_dir: Path, *args: str, keep_stack: bool = False) -> Iterator[Local]:
    """`python -m stock_platform.local <command>` on a small sample, its output in `local_dir`/<command>.log.

    Whatever is left running when the test fails is killed at the end, PostgreSQL included.
    """
    local_dir.mkdir(exist_ok=True)
    log = local_dir / f"{command}.log"
    command_line = [sys.executable, "-m", "stock_platform.local", command, "--companies", "20", "--listed", "10", *args]
    run = Local(start(command_line, local_env(local_dir), log), log)
    try:
        yield run
    finally:
        if run.process.poll() is None:
            run.started = descendants(run.process)
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()
        for leftover in run.started:
            with suppress(psutil.NoSuchProcess):
                leftover.kill()
        if not keep_stack:
            stop_local_stack(local_dir)
        stop_pgserver(local_dir / "pgdata")


def make_stop(local_dir: Path) -> str:
    """`make stop` for the stack of `local_dir`; its output."""
    stopped = subprocess.run(
        [sys.executable, "-m", "stock_platform.local", "stop"],
        env=local_env(local_dir),
        check=False,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert stopped.returncode == 0, stopped.stderr
    return stopped.stdout


def dead_pid() -> int:
    """The pid of a process that has exited: what a process killed without cleaning up leaves in a list."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.daemon
@STOPS
def test_ui_stops_everything_it_started(tmp_path: Path, signum: int) -> None:
    data_dir = tmp_path / "local" / "pgdata"
    # A data folder left by a make ui that was killed: the server stopped, its pid still on pgserver's list.
    start_pgserver(data_dir)
    stop_pgserver(data_dir)
    (data_dir / ".handle_pids.json").write_text(json.dumps([dead_pid()]))
    port = free_port()

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def serving() -> bool:
        return answers() and all(part in command_lines(ui.process) for part in UI_PROCESSES)

    with local("ui", tmp_path / "local", "--port", str(port)) as ui:
        wait_until(ui.alive_until(serving), timeout=HANG_S, what=f"make ui's webserver and {UI_PROCESSES}", interval=1)
        ui.stop_and_check(signum, data_dir)


@STOPS
def test_run_stops_everything_it_started(tmp_path: Path, signum: int) -> None:
    data_dir = tmp_path / "local" / "pgdata"
    # make run is stopped while its load waits for the table's lock, which the test takes first: so the test
    # starts the server of make run's data folder, and leaves it (to make run alone) once make run uses it.
    dsn = psycopg_dsn(start_pgserver(data_dir))
    holder = psycopg.connect(dsn, autocommit=True)
    try:
        holder.execute("BEGIN")
        key = Target(SCHEMA, TABLE).lock_key
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        with local("run", tmp_path / "local") as run:

            def load_waits() -> bool:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    return len(lock_waiters(conn, key)) == 1

            wait_until(run.alive_until(load_waits), timeout=HANG_S, what="make run's load to wait for the lock")
            stop_pgserver(data_dir)  # the test's own handle on the server
            assert running_postmaster(data_dir) is not None  # make run still uses it
            run.stop_and_check(signum, data_dir)
    finally:
        holder.close()  # its server is gone by now


def test_a_stale_handle_does_not_keep_postgres_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    start_pgserver(data_dir)
    handles = data_dir / ".handle_pids.json"
    handles.write_text(json.dumps([dead_pid(), *json.loads(handles.read_text())]))
    postmaster = running_postmaster(data_dir)
    assert postmaster is not None

    stop_pgserver(data_dir)
    assert not postmaster.is_running()
    assert json.loads(handles.read_text()) == []


def test_a_server_another_live_process_uses_keeps_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        start_pgserver(data_dir)
        handles = data_dir / ".handle_pids.json"
        handles.write_text(json.dumps([other.pid, *json.loads(handles.read_text())]))
        stop_pgserver(data_dir)
        assert running_postmaster(data_dir) is not None
        assert json.loads(handles.read_text()) == [other.pid]
    finally:
        other.kill()
        other.wait()
        stop_pgserver(data_dir)
    assert running_postmaster(data_dir) is None


def test_the_stack_remembers_between_commands_until_make_stop(tmp_path: Path) -> None:
    local_dir = tmp_path / "local"
    try:
        remembers(local_dir)
    finally:
        stop_local_stack(local_dir)


def remembers(local_dir: Path) -> None:
    with local("run", local_dir, keep_stack=True) as first:
        assert first.process.wait(HANG_S) == 0, first.log.read_text()[-3000:]
    first_output = first.log.read_text()
    assert "24 objects uploaded now" in first_output  # 23 files and the list
    pid, endpoint = running_moto(local_dir) or (0, "")
    assert pid and psutil.pid_exists(pid)

    (local_dir / "run.log").rename(local_dir / "first-run.log")
    with local("run", local_dir, keep_stack=True) as second:
        assert second.process.wait(HANG_S) == 0, second.log.read_text()[-3000:]
    output = second.log.read_text()
    assert " 0 objects uploaded now" in output, output[-3000:]
    assert "Committed: nothing; the table was not changed by this run" in output
    assert running_moto(local_dir) == (pid, endpoint)  # the same endpoint served both

    # The links the first run printed open in a browser (unsigned GETs): its extract and its rejected rows.
    # (in the report and again in the message)
    [rejects_uri] = {line.split(": ", 1)[1] for line in first_output.splitlines() if line.startswith("Rejected rows:")}
    bucket, prefix = rejects_uri.removeprefix("s3://").split("/", 1)
    with urllib.request.urlopen(f"{endpoint}/{bucket}/Output/historical_stock_data.csv", timeout=30) as extract:
        assert extract.status == 200 and extract.read().count(b"\n") > 1000
    with urllib.request.urlopen(f"{endpoint}/{bucket}?list-type=2&prefix={prefix}", timeout=30) as listing:
        [key] = [k.split("</Key>")[0] for k in listing.read().decode().split("<Key>")[1:]]
    with urllib.request.urlopen(f"{endpoint}/{bucket}/{key}", timeout=30) as rejects:
        assert rejects.read().decode().startswith('"reason",')

    assert "moto at " in make_stop(local_dir)
    assert not psutil.pid_exists(pid) and running_moto(local_dir) is None
    assert make_stop(local_dir).startswith("Nothing of the local stack was running")


def test_the_local_instance_queues_runs_as_production_does(tmp_path: Path) -> None:
    with dg.DagsterInstance.from_config(str(write_local_instance(tmp_path / "home").parent)) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, dg.QueuedRunCoordinator)
        assert coordinator.dequeue_interval_seconds == 1
        queue = coordinator.get_run_queue_config()
        assert [(limit["key"], limit["limit"]) for limit in queue.tag_concurrency_limits] == [
            ("stock_platform/target", 1)
        ]
