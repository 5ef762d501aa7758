"""The floor script's COPY input (benchmarks/floor.py) keeps every value: a fair floor loads the same rows."""

import datetime as dt

import pyarrow as pa

from benchmarks.floor import prices_to_csv
from stock_platform.batch.schema import ARROW_SCHEMA


def test_prices_csv_round_trips_floats_exactly() -> None:
    value = 0.1 + 0.2  # 0.30000000000000004: the CSV must not shorten it
    table = pa.table(
        {
            "stock_date": [dt.date(2017, 1, 2)],
            "open_value": [value],
            "high_value": [1e-300],
            "low_value": [123456789.123456789],
            "close_value": [2.5],
            "volume_traded": [2**62],
            "daily_percent_change": [None],
            "value_change": [-0.0],
            "company_name": ["a,b"],
        },
        schema=ARROW_SCHEMA,
    )
    line = prices_to_csv(table).decode().strip()
    fields = line.split(",")
    assert float(fields[1]) == value and float(fields[2]) == 1e-300 and int(fields[5]) == 2**62
    assert fields[6] == "" and line.endswith('"a,b"')
