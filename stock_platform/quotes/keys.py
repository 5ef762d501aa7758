"""Names of the intraday domain, declared once: asset keys, check names, the ingest step, partitions."""

import dagster as dg

QUOTE_MONTH_LOG = dg.AssetKey("quote_month_log")
QUOTE_LAKE_PARTS = dg.AssetKey("quote_lake_parts")
QUOTE_LAKE = dg.AssetKey("quote_lake")
STOCK_QUOTES = dg.AssetKey("stock_quotes")
PRICE_MOVE_ALERTS = dg.AssetKey("price_move_alerts")

INGEST_STEP = "ingest_quotes"
UNIQUE_KEYS_CHECK = "quote_month_log_has_unique_keys"
TIME_ORDER_CHECK = "quote_month_log_is_in_time_order"

FIRST_MONTH = "201607"
FIRST_DAY = "2016-07-01"


def month_partitions(exchange_tz: str) -> dg.MonthlyPartitionsDefinition:
    """`YYYYMM` keys on the exchange's calendar, from 2016-07, up to next month: a producer's clock slightly ahead
    at the turn of a month must not make its quotes unloggable (the sensor refuses quotes over a day ahead)."""
    return dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, fmt="%Y%m", timezone=exchange_tz, end_offset=1)


def day_partitions(exchange_tz: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone=exchange_tz, end_offset=1)
