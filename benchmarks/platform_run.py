"""One platform run in its own process (so the parent can read its peak RSS): prints the outcome as JSON.

`python -m benchmarks.platform_run DAGSTER_HOME [FIRST...LAST]`: every company partition, or that range of them.
With STOCK_PLATFORM_BENCH_PROFILE=FILE the run is sampled by pyinstrument (which slows it: such a run is not timed)
and FILE gets the functions that took the most time, then the call tree.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg

from stock_platform.batch.summary import CompanyStatus
from stock_platform.local.report import execute_batch


def peak_rss_mb() -> float:
    """This process's own high-water mark. (getrusage/wait4's ru_maxrss would not do: Linux keeps it across the
    fork+exec that starts this process, so it reports the parent's size when the parent is larger.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


T = TypeVar("T")
PROFILE_TOP = 25  # lines of the flat listing (time spent in each function itself)


def profiled(path: str, call: Callable[[], T]) -> T:
    """`call()` sampled by pyinstrument; `path` gets the flat listing's top entries, then the call tree."""
    from pyinstrument import Profiler  # noqa: PLC0415 - a dev tool, imported only for a profiled run
    from pyinstrument.renderers import ConsoleRenderer  # noqa: PLC0415

    profiler = Profiler(interval=0.002)
    profiler.start()
    try:
        return call()
    finally:
        session = profiler.stop()
        flat = ConsoleRenderer(unicode=False, color=False, flat=True, show_all=True).render(session)
        tree = ConsoleRenderer(unicode=False, color=False).render(session)
        text = "Top functions (own time, s):\n" + "\n".join(top_functions(flat)) + "\n\nCall tree:\n" + tree
        Path(path).write_text(text.replace(f"{Path.cwd()}/", ""))  # paths relative to the checkout


def top_functions(flat: str, count: int = PROFILE_TOP) -> list[str]:
    """The first `count` functions of pyinstrument's flat listing, without its "[self]" row.

    The flat listing sums by frame identifier, and every function's "[self]" part (its own time beside its
    callees') has the same one: that row is the total of them all, shown under the file of whichever it met last (a
    batch run's report named stock_platform/downloads/assets.py). Not one place.
    """
    rows = [line for line in flat.splitlines() if line[:1].isdigit() and " [self] " not in f" {line} "]
    return rows[:count]


def main() -> None:
    home = sys.argv[1]
    partition_range = tuple(sys.argv[2].split("...", 1)) if len(sys.argv) > 2 else None  # type: ignore[assignment]
    with dg.DagsterInstance.from_config(home) as instance:
        started = time.monotonic()
        run = lambda: execute_batch(instance=instance, partition_range=partition_range)  # type: ignore[arg-type]  # noqa: E731
        profile = os.environ.get("STOCK_PLATFORM_BENCH_PROFILE")
        outcome = profiled(profile, run) if profile else run()
        wall = time.monotonic() - started
        stats = instance.get_run_stats(outcome.run_id)
    summary = outcome.summary
    print(
        json.dumps(
            {
                "success": outcome.success,
                "error": outcome.error,
                "run_seconds": stats.end_time - stats.start_time,  # run start to run success, as Dagster records it
                "wall_seconds": wall,
                "rows_loaded": summary.committed_rows if summary else None,
                "companies_loaded": summary.count(CompanyStatus.LOADED) if summary else None,
                "companies_unchanged": summary.count(CompanyStatus.UNCHANGED) if summary else None,
                "table_load_seconds": summary.phases.get("load") if summary else None,
                "table_rows": summary.table.rows if summary and summary.table else None,
                "phases": dict(summary.phases) if summary else {},
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
