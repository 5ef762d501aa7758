"""One platform run in its own process (so the parent can read its peak RSS): prints the outcome as JSON.

`python -m benchmarks.platform_run DAGSTER_HOME [FIRST...LAST]`: every company partition, or that range of them.
"""

import json
import sys
import time

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


def main() -> None:
    home = sys.argv[1]
    partition_range = tuple(sys.argv[2].split("...", 1)) if len(sys.argv) > 2 else None  # type: ignore[assignment]
    with dg.DagsterInstance.from_config(home) as instance:
        started = time.monotonic()
        outcome = execute_batch(instance=instance, partition_range=partition_range)  # type: ignore[arg-type]
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
