"""Processes the tests start (the daemon, dagster dev, the local stack's entry points): each in its own process
group, always stopped — the whole group, so the code servers and run workers they spawned go too — and helpers
that check a stopped process left nothing running behind it."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import psutil

from stock_platform.local.stack import PROJECT_ROOT, stop_process_group

# Only bounds a process that ignores SIGTERM: it is then killed.
STOP_TIMEOUT_S = 60.0


def dagster_command(tool: str, *args: str) -> list[str]:
    """A command of the venv's dagster CLIs (`dagster`, `dagster-daemon`) on the project's workspace."""
    return [str(Path(sys.executable).parent / tool), *args, "-w", str(PROJECT_ROOT / "workspace.yaml")]


def start(command: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """Start `command` in a new session (its own process group), its output to `log` or nowhere."""
    with open(log, "wb") if log else open(os.devnull, "wb") as out:
        return subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path | None = None) -> Iterator[subprocess.Popen]:
    with ExitStack() as cleanup:
        process = start(command, env, log)
        cleanup.callback(stop_process_group, process, STOP_TIMEOUT_S)
        yield process


def signal_group(process: subprocess.Popen, signum: int) -> None:
    """What a terminal's Ctrl-C (SIGINT) or `kill -TERM -<pgid>` does: signal every process of the group."""
    os.killpg(process.pid, signum)


def descendants(process: subprocess.Popen) -> list[psutil.Process]:
    """Every process `process` started and that is still its descendant (not what daemonised itself away)."""
    return psutil.Process(process.pid).children(recursive=True)


def command_lines(process: subprocess.Popen) -> str:
    """The command lines of `process`'s descendants, one string to search (those exiting meanwhile left out)."""
    lines = []
    for p in descendants(process):
        with suppress(psutil.NoSuchProcess):
            lines.append(" ".join(p.cmdline()))
    return "\n".join(lines)


def survivors(processes: list[psutil.Process]) -> list[str]:
    """Those of `processes` still running (psutil compares start times too, so a reused pid does not count)."""
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return alive


def group_members(pgid: int) -> list[str]:
    """Processes still in process group `pgid`."""
    members = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                members.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])}")
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return members
