"""Process-wide settings the platform's definitions apply when they load, and the sensors' declared intervals
(stock_platform/runtime.py)."""

import os

import pytest

from stock_platform.definitions import defs
from stock_platform.runtime import DAEMON_LOOP_SECONDS, EVENT_BATCH_SIZE, EVENT_BATCH_SIZE_DEFAULT, daemon_min_interval


def test_loading_the_definitions_turns_event_batches_on(monkeypatch) -> None:
    monkeypatch.delenv(EVENT_BATCH_SIZE, raising=False)
    defs()
    assert os.environ[EVENT_BATCH_SIZE] == EVENT_BATCH_SIZE_DEFAULT


def test_a_size_the_environment_sets_is_kept(monkeypatch) -> None:
    monkeypatch.setenv(EVENT_BATCH_SIZE, "0")  # an operator turning batches off
    defs()
    assert os.environ[EVENT_BATCH_SIZE] == "0"


def test_the_daemon_loop_is_dagsters() -> None:
    from dagster._daemon.sensor import MIN_INTERVAL_LOOP_TIME  # noqa: PLC0415 - private: what the constant copies

    assert DAEMON_LOOP_SECONDS == MIN_INTERVAL_LOOP_TIME


@pytest.mark.parametrize(
    ("seconds", "declared", "ticks_every"),
    [(1, 3, 5), (5, 3, 5), (7, 8, 10), (10, 8, 10), (30, 28, 30), (60, 58, 60), (300, 298, 300)],
)
def test_a_sensor_is_declared_to_tick_at_the_first_daemon_loop_its_interval_after_the_last(
    seconds: int, declared: int, ticks_every: int
) -> None:
    assert daemon_min_interval(seconds) == declared
    # Loops every 5 s, the last tick having begun up to 2 s after its loop: the first loop that starts the next.
    for late in (0.0, 0.01, 1.99):
        since_last = [loop * DAEMON_LOOP_SECONDS - late for loop in range(1, 100)]
        first = next(i for i, elapsed in enumerate(since_last, start=1) if elapsed >= declared)
        assert first * DAEMON_LOOP_SECONDS == ticks_every
