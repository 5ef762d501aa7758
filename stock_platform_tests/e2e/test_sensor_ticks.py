"""Sensors tick at the interval they are configured with, through the real `dagster-daemon`.

The daemon looks at its sensors once per loop of 5 s and starts a tick when the sensor's minimum interval has
passed since its last tick began. A tick begins a moment after its loop does, so a minimum interval equal to a
whole number of loops is that moment short at the loop it was meant for: given Dagster as is, a sensor set to 5 s
ticked every 10 s (stock_platform/runtime.py, `daemon_min_interval`).
"""

import itertools
import os
import statistics
from pathlib import Path

import dagster as dg
import pytest

from stock_platform.local.stack import write_local_instance
from stock_platform_tests.processes import dagster_command, running
from stock_platform_tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.daemon]

HANG_S = 600  # bounds a wait for ticks that never come
INTERVAL_S = 5
TICKS = 6
SENSOR = "s3_marker_sensor"


def tick_starts(instance: dg.DagsterInstance, sensor: str) -> list[float]:
    for state in instance.all_instigator_state():
        if state.instigator_name == sensor:
            return sorted(t.timestamp for t in instance.get_ticks(state.instigator_origin_id, state.selector_id))
    return []


def test_a_sensor_ticks_every_interval_not_every_other_daemon_loop(stack, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    write_local_instance(home)
    env = {**os.environ, "DAGSTER_HOME": str(home), "STOCK_PLATFORM_SENSOR_INTERVAL_SECONDS": str(INTERVAL_S)}
    with (
        running(dagster_command("dagster-daemon", "run"), env, tmp_path / "daemon.log"),
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        ticks = wait_until(
            lambda: starts[:TICKS] if len(starts := tick_starts(instance, SENSOR)) >= TICKS else None,
            timeout=HANG_S,
            what=f"{TICKS} ticks of {SENSOR}",
            interval=0.5,
        )
    spacing = [round(later - earlier, 2) for earlier, later in itertools.pairwise(ticks)]
    # Every 5 s loop, give or take when each tick began in it; every other loop would be 10 s.
    assert statistics.median(spacing) < 1.5 * INTERVAL_S, spacing
    assert min(spacing) > INTERVAL_S / 2, spacing  # and never more often than the loop
