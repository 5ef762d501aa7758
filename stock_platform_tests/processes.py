"""Dagster's own processes (daemon, dagster dev) for the end-to-end tests: started in their own process group,
always stopped — the whole group, so the code servers and run workers they spawned go too."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stock_platform.local.stack import PROJECT_ROOT


def dagster_command(tool: str, *args: str) -> list[str]:
    """A command of the venv's dagster CLIs (`dagster`, `dagster-daemon`) on the project's workspace."""
    return [str(Path(sys.executable).parent / tool), *args, "-w", str(PROJECT_ROOT / "workspace.yaml")]


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path | None = None) -> Iterator[subprocess.Popen]:
    out = open(log, "wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if log:
            out.close()
