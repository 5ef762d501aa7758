"""Frames in PostgreSQL's binary COPY format, encoded column by column with numpy.

The load sends its rows in this format rather than CSV: PostgreSQL reads it without parsing text (1.1 M rows in
1.41-1.53 s against 2.17-2.55 s as CSV, one server, the same rows), encoding it here costs a seventh of writing
the CSV (0.09 s against 0.65 s), and a float arrives as its exact bits instead of its shortest decimal form.

The format, as PostgreSQL's COPY documentation gives it: a signature and an empty header extension; then each
row as a 16-bit field count followed, per field, by a 32-bit byte length (-1 for NULL, with no value) and the
value in network byte order; then a 16-bit -1. Rows differ in size only by their NULL fields, so a frame is
encoded as one fixed-layout record array per pattern of NULLs (almost always one): the rows' order within a COPY
does not matter to a table.
"""

import numpy as np
import pyarrow as pa

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # then the flags field and the header extension's length: none
TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # PostgreSQL's binary dates count days from 2000-01-01, Arrow's from 1970-01-01


def _values(column: pa.ChunkedArray) -> tuple[str, np.ndarray]:
    """(numpy big-endian type, values) of one column; a NULL's value is never sent."""
    kind = column.type
    if pa.types.is_date32(kind):
        return ">i4", column.cast(pa.int32()).fill_null(0).to_numpy() - _PG_EPOCH_DAYS
    if pa.types.is_float64(kind):
        return ">f8", column.fill_null(0.0).to_numpy()
    if pa.types.is_int64(kind):
        return ">i8", column.fill_null(0).to_numpy()
    if pa.types.is_string(kind):
        # A frame is one company's: its text column (the company's name) holds one value, so every row's
        # field has the same width.
        distinct = column.drop_null().unique().to_pylist()
        if len(distinct) > 1:
            raise ValueError(f"a text column with {len(distinct)} different values cannot be encoded: {distinct[:3]}")
        text = (distinct[0] if distinct else "").encode()
        return f"S{len(text)}", np.full(len(column), text, dtype=f"S{len(text)}")
    raise TypeError(f"no binary COPY encoding for {kind}")


def encode_rows(table: pa.Table) -> bytes:
    """The table's rows in binary COPY format, without the signature or the trailer (see the module)."""
    if not table.num_rows:
        return b""
    values = [_values(column) for column in table.columns]
    nulls = [column.is_null().to_numpy(zero_copy_only=False) for column in table.columns]
    # Each row's NULL pattern as one integer: bit i set when field i is NULL.
    patterns = np.zeros(table.num_rows, dtype=np.int64)
    for i, null in enumerate(nulls):
        patterns |= null.astype(np.int64) << i
    encoded = []
    for pattern in np.unique(patterns):
        rows = np.flatnonzero(patterns == pattern)
        null_fields = [bool(pattern >> i & 1) for i in range(len(values))]
        layout: list[tuple[str, str]] = [("fields", ">i2")]
        for i, (dtype, _) in enumerate(values):
            layout.append((f"length{i}", ">i4"))
            if not null_fields[i]:
                layout.append((f"value{i}", dtype))
        records = np.empty(len(rows), dtype=np.dtype(layout))
        records["fields"] = len(values)
        for i, (dtype, column) in enumerate(values):
            records[f"length{i}"] = -1 if null_fields[i] else np.dtype(dtype).itemsize
            if not null_fields[i]:
                records[f"value{i}"] = column[rows]
        encoded.append(records.tobytes())
    return b"".join(encoded)
