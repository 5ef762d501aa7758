"""The whole platform: each domain's definitions, merged, with every resource bound to its environment variable.

Read top to bottom, this file lists every asset, check, job, sensor and resource of the platform (`dg list defs`
prints the same). Definitions are built when Dagster loads the code location (`@dg.definitions`), not at import
time, so an optional setting falls back to its documented default when its variable is unset and tests can set
variables with monkeypatch before loading. Every variable is listed in docs/configuration.md.
"""

import dagster as dg

from stock_platform.batch.definitions import build_batch_defs
from stock_platform.batch.jobs import stock_batch_job
from stock_platform.downloads.definitions import build_download_defs
from stock_platform.notifications.definitions import build_notification_defs
from stock_platform.quotes.definitions import build_quote_defs
from stock_platform.runtime import enable_event_batches, freeze_loaded_objects
from stock_platform.settings import Settings
from stock_platform.watchdog.definitions import build_watchdog_defs


@dg.definitions
def defs() -> dg.Definitions:
    settings = Settings.from_environment()
    downloads = build_download_defs(settings)
    domains = [build_batch_defs(settings), downloads, build_quote_defs(settings)]
    platform = dg.Definitions.merge(
        *domains,
        # Every run of a pipeline (the batch load, the daily download) ends with one
        # <prefix>_Pipeline_Success|Failure message.
        build_notification_defs(settings, monitored_jobs=[stock_batch_job, *(downloads.jobs or [])]),
        build_watchdog_defs(settings),
        dg.Definitions(
            resources=settings.resources(),
            # A batch is I/O-bound and already concurrent inside its step; a process per step would add seconds
            # of start-up to every run.
            executor=dg.in_process_executor,
        ),
    )
    enable_event_batches()  # the batch's frames are stored a batch at a time (runtime.py)
    freeze_loaded_objects()  # what is loaded now lives as long as the process (runtime.py)
    return platform
