"""Asset keys, declared once: assets, checks, notifications and tests refer to these."""

import dagster as dg

TOP_COMPANIES = dg.AssetKey("top_companies")
RAW_STOCK_FILES = dg.AssetKey("raw_stock_files")
COMPANY_STOCK_PRICES = dg.AssetKey("company_stock_prices")
HISTORICAL_STOCKS_DATA = dg.AssetKey("historical_stocks_data")
HISTORICAL_STOCK_DATA_CSV = dg.AssetKey("historical_stock_data_csv")
