"""The platform's quote path in its own process: the stream sensor's ticks and the ingest runs they request, one
after the other as the daemon would launch them, until a tick finds nothing new. Prints the outcome as JSON.

`python -m benchmarks.quotes_run DAGSTER_HOME` with the platform's environment (STOCK_PLATFORM_QUOTES_STREAM...);
STOCK_PLATFORM_BENCH_PROFILE=FILE profiles it as platform_run does.
"""

import json
import os
import sys
import time
from typing import Any

import dagster as dg

from benchmarks.platform_run import peak_rss_mb, profiled
from stock_platform.definitions import defs

SENSOR = "quote_stream_sensor"
JOB = "quote_ingest_job"
SENSOR_RESOURCES = ("quote_stream", "bucket", "intraday")
MAX_TICKS = 1000


def main() -> None:
    profile = os.environ.get("STOCK_PLATFORM_BENCH_PROFILE")
    outcome = profiled(profile, consume) if profile else consume()
    outcome["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(outcome))


def consume() -> dict[str, Any]:
    outcome: dict[str, Any] = {"success": False, "error": None, "runs": 0, "run_seconds": []}
    with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
        definitions = defs()
        sensor = definitions.resolve_sensor_def(SENSOR)
        job = definitions.resolve_job_def(JOB)
        resources = {k: v for k, v in (definitions.resources or {}).items() if k in SENSOR_RESOURCES}
        started = time.perf_counter()  # the definitions are loaded once per code server, not per tick
        cursor = None
        for _ in range(MAX_TICKS):
            context = dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance)
            result = sensor(context)
            if not isinstance(result, dg.SensorResult) or not result.run_requests:
                break
            cursor = result.cursor
            for request in result.run_requests:
                run = job.execute_in_process(
                    run_config=request.run_config, tags=request.tags, instance=instance, raise_on_error=False
                )
                stats = instance.get_run_stats(run.run_id)
                outcome["runs"] += 1
                if stats.end_time and stats.start_time:
                    outcome["run_seconds"].append(round(stats.end_time - stats.start_time, 3))
                if not run.success:
                    outcome["error"] = f"run {run.run_id} failed"
        else:
            outcome["error"] = f"still reading after {MAX_TICKS} ticks"
        outcome["seconds"] = time.perf_counter() - started
    outcome["success"] = outcome["error"] is None
    return outcome


if __name__ == "__main__":
    main()
