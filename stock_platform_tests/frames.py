"""A small company frame with its source, as the batch loads it, for tests that write the table directly."""

import datetime as dt

import pyarrow as pa

from stock_platform.batch import warehouse
from stock_platform.batch.schema import ARROW_SCHEMA


def frame(company: str, closes: list[float], etag: str = "e1", start: int = 1) -> pa.Table:
    n = len(closes)
    table = pa.table(
        {
            "stock_date": [dt.date(2017, 11, start + i) for i in range(n)],
            "open_value": [10.0] * n,
            "high_value": [max(11.0, c) for c in closes],
            "low_value": [9.0] * n,
            "close_value": closes,
            "volume_traded": [100] * n,
            "daily_percent_change": [(c - 10.0) / 10.0 * 100 for c in closes],
            "value_change": [c - 10.0 for c in closes],
            "company_name": [company] * n,
        },
        schema=ARROW_SCHEMA,
    )
    return warehouse.with_source(table, f"Stocks/{company}.us.txt", etag)
