"""`make image-check` (scripts/check_image_steps.sh) leaves nothing running, however it ends: success, Ctrl-C,
SIGTERM to its process group, SIGTERM to the script alone.

Its code server used to ignore SIGTERM (started with `&`, it inherited an ignored SIGINT, and Dagster gives SIGTERM
whatever SIGINT has) and outlived the script. The script runs here on the project's virtualenv (IMAGE_CHECK_VENV), so
it reaches a running code server in seconds; each signal is sent once that server has installed its signal handlers,
which is when the old script's server started ignoring SIGTERM.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stock_platform.local.stack import PROJECT_ROOT
from stock_platform_tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.daemon]

SCRIPT = PROJECT_ROOT / "scripts" / "check_image_steps.sh"
SIGTERM_MASK = 1 << (signal.SIGTERM - 1)
# Bounds a hang only: the code server is up in seconds, and the script stops everything within 30 s.
START_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 90.0


def processes_started_by(tmp_path: Path) -> dict[int, str]:
    """pid -> command line of every live process whose environment carries this test's TMPDIR (all the script's)."""
    marker = f"TMPDIR={tmp_path}".encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def code_server_with_signal_handlers(tmp_path: Path) -> int | None:
    """The script's code server once SIGTERM is caught or ignored by it, i.e. Dagster's handlers are installed."""
    for pid, command in processes_started_by(tmp_path).items():
        if "code-server start" not in command:
            continue
        try:
            status = dict(
                line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if (int(status["SigCgt"], 16) | int(status["SigIgn"], 16)) & SIGTERM_MASK:
            return pid
    return None


def start_script(tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "IMAGE_CHECK_VENV": str(Path(sys.executable).parent.parent), "TMPDIR": str(tmp_path)}
    with open(tmp_path / "image-check.log", "wb") as log:
        # Its own session, as a terminal or a CI runner gives it: a group signal reaches it and nothing of pytest.
        return subprocess.Popen(
            [str(SCRIPT)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def finish(script: subprocess.Popen, tmp_path: Path) -> int:
    try:
        return script.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(script.pid, signal.SIGKILL)
        script.wait()
        pytest.fail(f"the script did not exit:\n{(tmp_path / 'image-check.log').read_text()}")


def test_a_successful_check_leaves_nothing_running(tmp_path: Path) -> None:
    script = start_script(tmp_path)
    assert finish(script, tmp_path) == 0, (tmp_path / "image-check.log").read_text()
    log = (tmp_path / "image-check.log").read_text()
    assert "code server healthy (HEALTHCHECK)" in log and "location stock_platform loaded" in log
    assert processes_started_by(tmp_path) == {}
    assert [p.name for p in tmp_path.iterdir()] == ["image-check.log"]  # its scratch directory is gone too


@pytest.mark.parametrize(
    ("send", "exit_code"),
    [
        pytest.param(lambda pid: os.killpg(pid, signal.SIGINT), 130, id="Ctrl-C"),
        pytest.param(lambda pid: os.killpg(pid, signal.SIGTERM), 143, id="SIGTERM to its process group"),
        pytest.param(lambda pid: os.kill(pid, signal.SIGTERM), 143, id="SIGTERM to the script alone"),
    ],
)
def test_a_stopped_check_stops_everything_it_started(tmp_path: Path, send, exit_code: int) -> None:
    script = start_script(tmp_path)
    try:
        wait_until(lambda: code_server_with_signal_handlers(tmp_path), timeout=START_TIMEOUT_S, what="the code server")
    except TimeoutError:
        os.killpg(script.pid, signal.SIGKILL)
        raise
    send(script.pid)
    assert finish(script, tmp_path) == exit_code
    # The script returns only once what it started is gone: nothing to wait for here.
    assert processes_started_by(tmp_path) == {}
    assert [p.name for p in tmp_path.iterdir()] == ["image-check.log"]
