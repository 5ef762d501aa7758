"""Asset key of the download domain, declared once."""

import dagster as dg

DAILY_STOCK_PRICES = dg.AssetKey("daily_stock_prices")
