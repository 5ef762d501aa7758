"""A frame's preview in the UI: its first rows, numbers rounded for display, dates as text."""

import datetime

import pyarrow as pa

from stock_platform.batch.metadata import preview


def test_the_preview_rounds_numbers_for_display_only() -> None:
    frame = pa.table(
        {
            "stock_date": [datetime.date(2018, 1, 2)],
            "close_value": [35.4596],
            "daily_percent_change": [1.1423567632939835],
            "volume_traded": [2046549],
            "company_name": ["aapl"],
        }
    )
    [record] = preview(frame).records
    assert record.data == {
        "stock_date": "2018-01-02",
        "close_value": 35.4596,
        "daily_percent_change": 1.1424,
        "volume_traded": 2046549,
        "company_name": "aapl",
    }
    assert frame.column("daily_percent_change")[0].as_py() == 1.1423567632939835  # the frame keeps every digit
