"""The one wait of the test suite: poll a condition until it holds.

Tests wait on what they need to be true, never for a fixed time; the timeout only bounds a hang, so it is
generous, and the error names what never happened and the last value seen.
"""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Call `condition` until it returns a truthy value and return that value.

    Raises TimeoutError after `timeout` seconds. The condition is always called once more at the deadline,
    so a slow machine that stalls the poller past the deadline still sees the latest state.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        time.sleep(interval)
