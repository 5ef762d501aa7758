"""The watchdog's definitions (filled in as it is built)."""

import dagster as dg

from stock_platform.settings import Settings


def build_watchdog_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions()
