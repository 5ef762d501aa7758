"""The binary COPY encoder's byte layout and its refusals (the round trip through PostgreSQL is in
integration/test_warehouse.py)."""

import datetime as dt
import struct

import pyarrow as pa
import pytest

from stock_platform.batch import pgbinary


def test_a_row_is_its_field_count_then_each_field_as_length_and_big_endian_value() -> None:
    table = pa.table(
        {
            "d": pa.array([dt.date(2000, 1, 2)], pa.date32()),
            "f": pa.array([None], pa.float64()),
            "i": pa.array([7], pa.int64()),
            "s": pa.array(["ab"]),
        }
    )
    expected = struct.pack(">hii", 4, 4, 1) + struct.pack(">i", -1) + struct.pack(">iq", 8, 7) + b"\x00\x00\x00\x02ab"
    assert pgbinary.encode_rows(table) == expected
    assert pgbinary.encode_rows(table.slice(0, 0)) == b""


def test_rows_are_grouped_by_their_nulls_and_none_is_lost() -> None:
    table = pa.table({"f": pa.array([1.0, None, 2.0, None], pa.float64()), "s": pa.array(["x"] * 4)})
    data = pgbinary.encode_rows(table)
    with_value = struct.pack(">hid", 2, 8, 1.0)  # one field count, a length, a double...
    assert data.count(struct.pack(">hi", 2, -1)) == 2  # two rows with f NULL
    assert data.startswith(with_value)
    assert len(data) == 2 * (2 + 4 + 8 + 4 + 1) + 2 * (2 + 4 + 4 + 1)


def test_a_text_column_with_several_values_or_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="2 different values"):
        pgbinary.encode_rows(pa.table({"s": ["a", "b"]}))
    with pytest.raises(TypeError, match="no binary COPY encoding"):
        pgbinary.encode_rows(pa.table({"b": [True]}))
