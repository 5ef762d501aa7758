"""Every measured run happens in a child process, which reports its outcome (and its own peak RSS) as the last
line of its output, in JSON: one way to start it and read that line."""

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def run_child(module: str, args: Sequence[str], env: Mapping[str, str], what: str) -> dict[str, Any]:
    """`python -m <module> <args>`; the JSON of its last output line. Raises when it printed nothing or failed."""
    process = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=False,
    )
    lines = process.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"the {what} printed nothing (exit {process.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    if not result["success"]:
        raise RuntimeError(f"the {what} failed: {result.get('error', result)}")
    return result
