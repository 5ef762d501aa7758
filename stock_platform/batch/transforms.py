"""Parse, validate and transform one company's CSV file. Pure pyarrow: no Dagster, no I/O.

The row contract (README "Data rules") lives here and nowhere else:
- header names match case-insensitively, ignoring surrounding spaces and a UTF-8 BOM; LF or CRLF;
  Date, Open, High, Low, Close, Volume are required, OpenInt and any other column are dropped;
- a file lacking a required column is rejected whole; an empty or header-only file yields no rows;
- a row is rejected when Date is not an ISO date (YYYY-MM-DD), a price is missing or not a finite number,
  or Volume is missing or not a non-negative integer; a line with the wrong number of fields is rejected;
- a repeated date keeps its last valid occurrence, the earlier ones count as duplicates;
- every row read is loaded, rejected (with its reason) or counted as a duplicate.

Rows never pass through Python objects: pyarrow parses and validates column-at-a-time, which is what keeps a
1,000-file batch within a second of parse time (see shared/PERFORMANCE_NOTES.md).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from stock_platform.batch.schema import (
    ARROW_SCHEMA,
    REJECT_COLUMNS,
    REJECT_SCHEMA,
    REQUIRED_INPUT_COLUMNS,
)

FileStatus = Literal["loaded", "empty", "rejected"]

# Year 0000 does not exist in PostgreSQL's calendar (nor in ISO 8601 without expanded years).
_ISO_DATE = r"^([1-9]\d{3}|0[1-9]\d{2}|00[1-9]\d|000[1-9])-\d{2}-\d{2}$"
# A decimal or scientific number; "nan", "inf" and hex are deliberately not numbers here.
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
# A non-negative integer that fits in bigint (at most 18 digits), optionally written with a zero fraction.
_VOLUME = r"^\+?\d{1,18}(\.0*)?$"
_PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class ParsedFile:
    """One company file after the row rules: the rows to load, the rows rejected, and the accounting."""

    company: str
    status: FileStatus
    prices: pa.Table  # schema.ARROW_SCHEMA, sorted by date, unique dates
    rejects: pa.Table  # schema.REJECT_SCHEMA
    rows_read: int
    duplicates: int
    reason: str | None = None  # why the whole file was rejected, or why it is empty

    @property
    def rows_loaded(self) -> int:
        return self.prices.num_rows

    @property
    def rows_rejected(self) -> int:
        return self.rejects.num_rows

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_rejected + self.duplicates


def empty_prices() -> pa.Table:
    return ARROW_SCHEMA.empty_table()


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def parse_stock_csv(data: bytes, company: str) -> ParsedFile:
    """Apply the row contract to one file's bytes. Never raises on bad input: it rejects instead."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        return _empty(company, "file is empty")
    text_ok = _is_utf8(data)
    if not text_ok:
        # Prices and dates are ASCII: transcoding keeps every byte of a stray Latin-1 name or symbol visible in
        # the rejects without letting it abort the parse.
        data = data.decode("latin-1").encode("utf-8")
    if b"\n" not in data and b"\r" in data:
        data = data.replace(b"\r", b"\n")  # classic Mac line ends: CR alone
    header_end = data.find(b"\n")
    header_line = data if header_end < 0 else data[:header_end]
    body = b"" if header_end < 0 else data[header_end + 1 :]
    names = _header_names(header_line)
    if not body.strip():
        return _empty(company, "file has a header but no rows")

    positions: dict[str, int] = {}
    for i, name in enumerate(names):
        positions.setdefault(name, i)
    missing = [c for c in REQUIRED_INPUT_COLUMNS if c not in positions]

    try:
        fields, malformed = _split_rows(body, len(names))
    except pa.ArrowInvalid as exc:
        return _unreadable(company, body, f"unreadable CSV: {_first_line(str(exc))}")

    raw = {c: fields.column(f"c{positions[c]}") if c in positions else None for c in REQUIRED_INPUT_COLUMNS}
    malformed_rejects = _malformed_rejects(malformed)
    rows_read = fields.num_rows + malformed_rejects.num_rows

    if missing:
        reason = "missing required column(s): " + ", ".join(missing)
        rejects = _field_rejects(raw, fields.num_rows, pa.scalar(reason, pa.string()))
        return ParsedFile(
            company=company,
            status="rejected",
            prices=empty_prices(),
            rejects=pa.concat_tables([rejects, malformed_rejects]),
            rows_read=rows_read,
            duplicates=0,
            reason=reason,
        )

    values, reasons = _validate(raw)
    valid = pc.is_null(reasons)
    field_rejects = _field_rejects(raw, fields.num_rows, reasons, mask=pc.invert(valid))
    good = values.filter(valid)
    deduped = _keep_last_per_date(good)
    prices = _derive(deduped.sort_by("stock_date"), company)
    rejects = pa.concat_tables([field_rejects, malformed_rejects])
    return ParsedFile(
        company=company,
        status="loaded",
        prices=prices,
        rejects=rejects,
        rows_read=rows_read,
        duplicates=good.num_rows - deduped.num_rows,
        reason=None,
    )


def too_large(company: str, size: int, limit: int) -> ParsedFile:
    """A file over the size limit is rejected whole, unread; it stays in S3 as the evidence."""
    reason = f"file is {size} bytes, over the {limit}-byte limit: not read"
    return ParsedFile(company, "rejected", empty_prices(), empty_rejects(), 0, 0, reason)


def rejects_to_csv(rejects: pa.Table) -> bytes:
    """The rejected rows as CSV with a header, the way a user opens them to fix the source."""
    sink = io.BytesIO()
    pacsv.write_csv(rejects, sink)
    return sink.getvalue()


def prices_to_csv(prices: pa.Table, include_header: bool = False) -> bytes:
    """Rows in table column order, the format PostgreSQL COPY ... (FORMAT csv) reads."""
    sink = io.BytesIO()
    pacsv.write_csv(prices, sink, pacsv.WriteOptions(include_header=include_header, quoting_style="needed"))
    return sink.getvalue()


def _empty(company: str, reason: str) -> ParsedFile:
    return ParsedFile(company, "empty", empty_prices(), empty_rejects(), 0, 0, reason)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def _header_names(line: bytes) -> list[str]:
    text = line.decode("utf-8").lstrip("\ufeff").rstrip("\r")
    try:
        row = next(csv.reader([text]), [])
    except csv.Error:  # a stray CR or NUL inside the header: fall back to a plain split
        row = text.replace("\r", "").replace("\x00", "").split(",")
    return [name.strip().lstrip("\ufeff").strip().lower() for name in row]


def _split_rows(body: bytes, width: int) -> tuple[pa.Table, list[tuple[str, int, int]]]:
    """Split the body into string fields; lines with the wrong number of fields are set aside, not fatal."""
    malformed: list[tuple[str, int, int]] = []

    def set_aside(row: pacsv.InvalidRow) -> str:
        malformed.append((row.text, row.expected_columns, row.actual_columns))
        return "skip"

    column_names = [f"c{i}" for i in range(max(width, 1))]
    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(
            column_names=column_names,
            use_threads=False,  # callers parallelise across files; in-order rows keep the handler simple
            block_size=max(len(body) + 1, 1 << 20),  # one block: a long line can't straddle two
        ),
        parse_options=pacsv.ParseOptions(invalid_row_handler=set_aside),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in column_names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    return table, malformed


def _malformed_rejects(malformed: list[tuple[str, int, int]]) -> pa.Table:
    if not malformed:
        return empty_rejects()
    n = len(malformed)
    blank = pa.array([""] * n, pa.string())
    columns = {
        "reason": pa.array([f"expected {exp} fields, found {act}" for _, exp, act in malformed], pa.string()),
        **{c: blank for c in REQUIRED_INPUT_COLUMNS},
        "raw_line": pa.array([text.rstrip("\r") for text, _, _ in malformed], pa.string()),
    }
    return pa.table([columns[c] for c in REJECT_COLUMNS], schema=REJECT_SCHEMA)


def _unreadable(company: str, body: bytes, reason: str) -> ParsedFile:
    # Last resort when pyarrow cannot tokenise the file at all (an unterminated quote, say): keep every
    # non-blank line verbatim so the rejects still hold the whole file.
    lines = [line.rstrip("\r") for line in body.decode("utf-8").split("\n") if line.strip()]
    blank = pa.array([""] * len(lines), pa.string())
    columns = {
        "reason": pa.array([reason] * len(lines), pa.string()),
        **{c: blank for c in REQUIRED_INPUT_COLUMNS},
        "raw_line": pa.array(lines, pa.string()),
    }
    rejects = pa.table([columns[c] for c in REJECT_COLUMNS], schema=REJECT_SCHEMA)
    return ParsedFile(company, "rejected", empty_prices(), rejects, len(lines), 0, reason)


def _field_rejects(
    raw: dict[str, pa.ChunkedArray | None],
    num_rows: int,
    reasons: pa.ChunkedArray | pa.Scalar,
    mask: pa.ChunkedArray | None = None,
) -> pa.Table:
    blank = pa.array([""] * num_rows, pa.string())
    columns = {c: (raw[c] if raw[c] is not None else blank) for c in REQUIRED_INPUT_COLUMNS}
    reason_col = reasons if not isinstance(reasons, pa.Scalar) else pa.array([reasons.as_py()] * num_rows, pa.string())
    table = pa.table(
        {"reason": reason_col, **columns, "raw_line": pa.array([""] * num_rows, pa.string())},
        schema=REJECT_SCHEMA,
    )
    return table.filter(mask) if mask is not None else table


def _validate(raw: dict[str, pa.ChunkedArray | None]) -> tuple[pa.Table, pa.ChunkedArray]:
    """Typed values for every row, and for each row the first rule it breaks (null when it breaks none)."""
    trimmed = {c: pc.utf8_trim_whitespace(raw[c]) for c in REQUIRED_INPUT_COLUMNS}
    stock_date = _parse_dates(trimmed["date"])
    checks: list[tuple[pa.ChunkedArray, str]] = [
        (pc.is_valid(stock_date), "Date is not a valid ISO date (YYYY-MM-DD)"),
    ]
    prices: dict[str, pa.ChunkedArray] = {}
    for name in _PRICE_COLUMNS:
        text = trimmed[name]
        prices[name] = number = _parse_numbers(text)
        label = name.capitalize()
        checks.append((pc.not_equal(pc.utf8_length(text), 0), f"{label} is missing"))
        checks.append((pc.fill_null(pc.is_finite(number), False), f"{label} is not a finite number"))
    volume_text = trimmed["volume"]
    volume = _parse_volumes(volume_text)
    checks.append((pc.not_equal(pc.utf8_length(volume_text), 0), "Volume is missing"))
    checks.append((pc.is_valid(volume), "Volume is not a non-negative integer"))

    values = pa.table(
        {
            "stock_date": stock_date,
            "open_value": prices["open"],
            "high_value": prices["high"],
            "low_value": prices["low"],
            "close_value": prices["close"],
            "volume_traded": volume,
        }
    )
    all_ok = checks[0][0]
    for ok, _ in checks[1:]:
        all_ok = pc.and_(all_ok, ok)
    num_rows = values.num_rows
    if pc.all(all_ok).as_py() is not False:
        return values, pa.chunked_array([pa.nulls(num_rows, pa.string())])
    # Only a file with bad rows pays for naming the reasons; the first broken rule wins.
    reasons = pa.nulls(num_rows, pa.string())
    for ok, message in reversed(checks):
        reasons = pc.if_else(ok, reasons, pa.scalar(message, pa.string()))
    return values, reasons


# Each parser tries one strict vectorised cast of the whole column first (the common, clean file) and only
# falls back to matching values one rule at a time when that cast fails. Both paths accept the same values.


def _parse_dates(text: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        dates = pc.cast(text, pa.date32())  # strict ISO: refuses 2017-02-30, 2017-1-5, times
    except pa.ArrowInvalid:
        shaped = pc.match_substring_regex(text, _ISO_DATE)
        parsed = pc.strptime(pc.if_else(shaped, text, None), format="%Y-%m-%d", unit="s", error_is_null=True)
        # strptime rolls 2017-02-30 over to March 2: keep only dates whose day is the day that was written.
        day_written = pc.cast(pc.utf8_slice_codeunits(pc.if_else(shaped, text, None), 8, 10), pa.int64())
        parsed = pc.if_else(pc.fill_null(pc.equal(pc.day(parsed), day_written), False), parsed, None)
        return pc.cast(parsed, pa.date32())
    # The cast accepts year 0000, which neither ISO 8601 nor PostgreSQL has.
    return pc.if_else(pc.greater(pc.year(dates), 0), dates, None)


def _parse_numbers(text: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        return pc.cast(text, pa.float64())  # nan and inf parse here and are refused as not finite
    except pa.ArrowInvalid:
        shaped = pc.match_substring_regex(text, _NUMBER)
        return pc.cast(pc.if_else(shaped, text, None), pa.float64())


def _parse_volumes(text: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        volume = pc.cast(text, pa.int64())
    except pa.ArrowInvalid:
        shaped = pc.match_substring_regex(text, _VOLUME)
        volume = pc.cast(pc.replace_substring_regex(pc.if_else(shaped, text, None), r"^\+|\.0*$", ""), pa.int64())
    return pc.if_else(pc.greater_equal(volume, 0), volume, None)


def _keep_last_per_date(table: pa.Table) -> pa.Table:
    dates = table.column("stock_date")
    if pc.count_distinct(dates).as_py() == table.num_rows:
        return table
    indexed = table.append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    last = indexed.group_by("stock_date", use_threads=False).aggregate([("_row", "max")])
    keep = pc.sort_indices(last.column("_row_max"))
    return table.take(pc.take(last.column("_row_max"), keep))


def _derive(values: pa.Table, company: str) -> pa.Table:
    open_, close = values.column("open_value"), values.column("close_value")
    value_change = pc.subtract(close, open_)
    # (close - open) / open * 100 in exactly that order, as the original extract computed it.
    percent = pc.multiply(pc.divide(value_change, open_), 100.0)
    percent = pc.if_else(pc.equal(open_, 0.0), pa.scalar(None, pa.float64()), percent)
    names = pa.array([company], pa.string()).take(pa.array(np.zeros(values.num_rows, dtype=np.int32)))
    return pa.table(
        {
            "stock_date": values.column("stock_date"),
            "open_value": open_,
            "high_value": values.column("high_value"),
            "low_value": values.column("low_value"),
            "close_value": close,
            "volume_traded": values.column("volume_traded"),
            "daily_percent_change": percent,
            "value_change": value_change,
            "company_name": names,
        },
        schema=ARROW_SCHEMA,
    )
