"""Process-wide tuning for the processes that load the platform (run workers, the code server, `make run`)."""

import functools
import gc
import os

# Dagster's switch for storing asset events in batches (dagster/_core/instance): the most events one call to the
# event log storage takes. A batch of frames is what was stored by the time the step records them (two 500-company
# runs here: 10 and 18 batches of 2 to 89 frames); this only bounds one.
EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE_DEFAULT = "500"


@functools.cache  # once per process
def freeze_loaded_objects() -> None:
    """Exempt everything loaded so far (imported modules, the definitions) from the cyclic garbage collector.

    A run's process holds ~310,000 such objects, all alive until it exits, and each full collection walked every
    one of them: six per batch run, ~80 ms each, wherever they fell (one in the no-change run's listing of the
    bucket made that run 0.11 s slower, 0.82 s against 0.71 s). `gc.freeze` is the interpreter's own tool for
    this; garbage is collected first so none of it is kept forever.
    """
    gc.collect()
    gc.freeze()


def enable_event_batches() -> None:
    """Let Dagster store a batch of asset events in one call (stock_platform/event_log.py), unless the
    environment sets its own size (0 stores every event alone). Dagster reads the variable for every event, in the
    process that runs the step: this one."""
    os.environ.setdefault(EVENT_BATCH_SIZE, EVENT_BATCH_SIZE_DEFAULT)


# How often Dagster's sensor daemon looks at the sensors (dagster/_daemon/sensor.py, MIN_INTERVAL_LOOP_TIME; a test
# compares the two). It starts a sensor's tick in a loop once the sensor's minimum interval has passed since its
# last tick began, and a tick begins a moment after its loop does.
DAEMON_LOOP_SECONDS = 5


def daemon_min_interval(seconds: int) -> int:
    """The minimum interval to declare so that the daemon ticks a sensor at the first loop `seconds` after its last
    tick: every `seconds` when that is a whole number of loops, else at the next loop after it.

    Declared as is, such an interval is short by that moment at the loop it was meant for, and the tick waits for
    the next one: a sensor set to 5 s ticked every 10 s (by the same rule, one set to 30 s every 35 s). Declared
    2 s (half a loop, rounded down) shorter, a tick that began up to 2 s into its loop still lets the loop meant
    start the next, and the loops before it still do not."""
    loops = max(1, -(-seconds // DAEMON_LOOP_SECONDS))  # rounded up
    return loops * DAEMON_LOOP_SECONDS - DAEMON_LOOP_SECONDS // 2
