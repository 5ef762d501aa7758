"""One daily download run in its own process, as the schedule would start it: prints the outcome as JSON.

`python -m benchmarks.download_run DAGSTER_HOME DAY` with the platform's environment (the price source's variables,
STOCK_PLATFORM_DOWNLOAD_TICKERS, the buckets).
"""

import json
import sys
import time
from typing import Any

import dagster as dg

from benchmarks.platform_run import peak_rss_mb
from stock_platform.definitions import defs
from stock_platform.downloads.assets import DAILY_DOWNLOAD_JOB
from stock_platform.downloads.keys import DAILY_STOCK_PRICES

COUNTS = ("tickers", "tickers_downloaded", "tickers_unchanged", "tickers_unavailable", "rows_new")


def main() -> None:
    home, day = sys.argv[1], sys.argv[2]
    with dg.DagsterInstance.from_config(home) as instance:
        started = time.perf_counter()
        job = defs().resolve_job_def(DAILY_DOWNLOAD_JOB)
        result = job.execute_in_process(instance=instance, partition_key=day, raise_on_error=False)
        wall = time.perf_counter() - started
        stats = instance.get_run_stats(result.run_id)
        metadata: dict[str, Any] = {}
        for event in result.asset_materializations_for_node(DAILY_STOCK_PRICES.path[-1]):
            metadata = {k: event.metadata[k].value for k in (*COUNTS, "provider_requests") if k in event.metadata}
    print(
        json.dumps(
            {
                "success": result.success,
                "run_seconds": stats.end_time - stats.start_time if stats.end_time and stats.start_time else None,
                "wall_seconds": wall,
                **metadata,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
