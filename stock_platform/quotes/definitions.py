"""The quotes domain's definitions (filled in as the domain is built)."""

import dagster as dg

from stock_platform.settings import Settings


def build_quote_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions()
