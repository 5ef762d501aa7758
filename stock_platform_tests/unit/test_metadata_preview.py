"""A frame's preview in the UI: its first rows as a Markdown table, numbers rounded for display, dates as text;
and the column schema declared once on the assets, not repeated in each company's event."""

import datetime

import dagster as dg
import pyarrow as pa

from stock_platform.batch.keys import COMPANY_STOCK_PRICES, HISTORICAL_STOCKS_DATA
from stock_platform.batch.metadata import COLUMN_SCHEMA, preview
from stock_platform.definitions import defs


def test_the_preview_rounds_numbers_for_display_only() -> None:
    frame = pa.table(
        {
            "stock_date": [datetime.date(2018, 1, 2), datetime.date(2018, 1, 3)],
            "close_value": [35.4596, 35.5],
            "daily_percent_change": [1.1423567632939835, None],
            "volume_traded": [2046549, 10],
            "company_name": ["aapl", "aapl"],
        }
    )
    lines = preview(frame).value.splitlines()
    assert lines == [
        "| stock_date | close_value | daily_percent_change | volume_traded | company_name |",
        "|---|---|---|---|---|",
        "| 2018-01-02 | 35.4596 | 1.1424 | 2046549 | aapl |",
        "| 2018-01-03 | 35.5 |  | 10 | aapl |",
    ]
    assert frame.column("daily_percent_change")[0].as_py() == 1.1423567632939835  # the frame keeps every digit


def test_the_column_schema_is_the_assets_definition_metadata() -> None:
    graph = defs().resolve_asset_graph()
    for key in (COMPANY_STOCK_PRICES, HISTORICAL_STOCKS_DATA):
        assert graph.get(key).metadata["dagster/column_schema"] == COLUMN_SCHEMA
    assert isinstance(COLUMN_SCHEMA, dg.TableSchema)
