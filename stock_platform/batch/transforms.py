"""Parse, validate and transform one company's CSV file. Pure pyarrow: no Dagster, no I/O.

The row contract (docs/data-rules.md) lives here and nowhere else:
- a file is read as text: UTF-8 (and, failing that, Latin-1), or UTF-16 or UTF-32 (LE or BE) when it starts with
  that encoding's byte-order mark; a file starting with the gzip magic bytes 1f 8b, whatever its name, is read
  once decompressed, up to `max_decompressed_bytes` (512 MiB) of content;
- a file that is not text is rejected whole and unread, as a file over the size limit is: no row is counted and
  nothing goes to the rejects, since the object left in S3 is the evidence and its "lines" would be junk. That is a
  corrupt or truncated gzip, gzip content past the limit, and binary content: a zip (an Excel .xlsx), bzip2, xz or
  zstd signature, or over 1 in 20 of the first 64 KiB being control bytes other than tab, LF and CR (random or
  compressed bytes run near 1 in 9; UTF-16 without its byte-order mark is half NULs);
- header names match case-insensitively, ignoring surrounding spaces and a byte-order mark; LF, CRLF or CR alone;
  Date, Open, High, Low, Close, Volume are required, OpenInt and any other column are dropped;
- a line holding nothing but whitespace (spaces, tabs) is blank and skipped, as an empty line is; an empty or
  header-only file yields no rows;
- a file lacking a required column is rejected whole, line by line: each non-blank line after the header is read
  and rejected, keeping its text in raw_line and the fields it has; so is a file the CSV reader cannot tokenise;
- fields are trimmed of surrounding whitespace, then a row is rejected when Date is not an ISO date (YYYY-MM-DD,
  a real calendar day, year 0001 or later); a price is missing or not a finite decimal or scientific number
  (nan, inf, hex, digit separators and non-ASCII digits are not numbers); Volume is missing or not a
  non-negative integer: at most 18 ASCII digits, optionally after a + and before a zero fraction (1000.0), so hex
  and any minus sign, even -0, are refused; or the line has the wrong number of fields;
- a row's verdict (loaded with its values, or rejected with its reason) depends on that row and the header alone,
  never on the other rows; encoding and compression are a property of the whole file;
- a repeated date keeps its last valid occurrence, the earlier ones count as duplicates;
- every row read is loaded, rejected (with its reason) or counted as a duplicate.

A file that loads never passes its rows through Python objects: pyarrow parses and validates column-at-a-time
(`make bench` measures it against a script without Dagster). Only the evidence of a line that cannot be split, or
of a file rejected whole, is built line by line.
"""

from __future__ import annotations

import csv
import io
import zlib
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
_VOLUME_DIGITS = 18
_VOLUME = rf"^\+?\d{{1,{_VOLUME_DIGITS}}}(\.0*)?$"
_PRICE_COLUMNS = ("open", "high", "low", "close")
# What bytes.strip() removes: a line of nothing else is blank, wherever it stands.
_BLANK = " \t\n\r\x0b\x0c"

# A daily file is under 1 MB of text; gzip turns 1 MB into as much as 1 GB, so expansion is bounded, not trusted.
MAX_DECOMPRESSED_BYTES = 512 * 1024 * 1024
# The batch's Arrow buffers come from the system allocator, which hands freed buffers back to the operating system
# at once: pyarrow's default (mimalloc) commits a heap of ~14 MB for each thread that allocates from it, which made a
# run's peak resident set ~150 MB larger at 1,000 files. The Parquet writer and reader take some buffers from the
# default allocator whatever pool they are given, so the batch encodes and decodes its frames in one thread.
MEMORY_POOL = pa.system_memory_pool()
_GZIP_MAGIC = b"\x1f\x8b"
_GUNZIP_STEP_IN = 1 << 20
_GUNZIP_STEP_OUT = 16 << 20
# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BYTE_ORDER_MARKS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xef\xbb\xbf", "utf-8"),
)
# What arrives instead of a CSV often enough to be named in the reason, so the sender knows what to fix.
_BINARY_SIGNATURES = (
    (_GZIP_MAGIC, "gzip inside gzip"),  # a top-level gzip is decompressed before this test
    (b"PK\x03\x04", "a zip archive, as an Excel .xlsx is"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
)
_BINARY_SAMPLE = 64 * 1024
# C0 controls but tab, LF and CR, and DEL: text has next to none, random or compressed bytes about 1 in 9.
_CONTROL_BYTES = bytes([*range(9), 11, 12, *range(14, 32), 127])
_MOST_CONTROL_BYTES_IN_TEXT = 1 / 20


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
        return int(self.prices.num_rows)  # pyarrow is untyped: keep the declared int honest

    @property
    def rows_rejected(self) -> int:
        return int(self.rejects.num_rows)

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_rejected + self.duplicates


def empty_prices() -> pa.Table:
    return ARROW_SCHEMA.empty_table()


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def parse_stock_csv(data: bytes, company: str, *, max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES) -> ParsedFile:
    """Apply the row contract to one file's bytes. Never raises on bad input: it rejects instead."""
    data, not_text = _as_text(data, max_decompressed_bytes)
    if not_text is not None:
        return _unread(company, not_text)
    if not data.strip():
        return _empty(company, "file is empty")
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
    if missing:
        return _every_line_rejected(company, body, positions, "missing required column(s): " + ", ".join(missing))

    try:
        fields, malformed = _split_rows(body, len(names))
    except pa.ArrowInvalid as exc:
        return _every_line_rejected(company, body, positions, f"unreadable CSV: {_first_line(str(exc))}")

    raw = {c: fields.column(f"c{positions[c]}") for c in REQUIRED_INPUT_COLUMNS}
    values, reasons = _validate(raw)
    valid = pc.is_null(reasons)
    good = values.filter(valid)
    deduped = _keep_last_per_date(good)
    prices = _derive(deduped.sort_by("stock_date"), company)
    rejects = pa.concat_tables([_field_rejects(raw, reasons, pc.invert(valid)), _malformed_rejects(malformed)])
    return ParsedFile(
        company=company,
        status="loaded",
        prices=prices,
        rejects=rejects,
        rows_read=fields.num_rows + len(malformed),
        duplicates=good.num_rows - deduped.num_rows,
        reason=None,
    )


def too_large(company: str, size: int, limit: int) -> ParsedFile:
    """A file over the size limit is rejected whole, unread; it stays in S3 as the evidence."""
    return _unread(company, f"file is {size} bytes, over the {limit}-byte limit: not read")


def rejects_to_csv(rejects: pa.Table) -> bytes:
    """The rejected rows as CSV with a header, the way a user opens them to fix the source."""
    sink = io.BytesIO()
    pacsv.write_csv(rejects, sink)
    return sink.getvalue()


def _empty(company: str, reason: str) -> ParsedFile:
    return ParsedFile(company, "empty", empty_prices(), empty_rejects(), 0, 0, reason)


def _unread(company: str, reason: str) -> ParsedFile:
    return ParsedFile(company, "rejected", empty_prices(), empty_rejects(), 0, 0, reason)


def _as_text(data: bytes, max_decompressed_bytes: int) -> tuple[bytes, str | None]:
    """The file's text as UTF-8 bytes, or why the file is not text at all."""
    if data.startswith(_GZIP_MAGIC):
        data, corrupt = _gunzip(data, max_decompressed_bytes)
        if corrupt is not None:
            return b"", corrupt
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            data = data[len(mark) :]
            if encoding != "utf-8":
                # errors="replace": a file cut mid-character keeps every line before the cut.
                data = data.decode(encoding, errors="replace").encode("utf-8")
            break
    binary = _binary_content(data)
    if binary is not None:
        return b"", f"not a text file (binary content{binary}): not read"
    if not _is_utf8(data):
        # Prices and dates are ASCII: transcoding keeps every byte of a stray Latin-1 name or symbol visible in
        # the rejects without letting it abort the parse.
        data = data.decode("latin-1").encode("utf-8")
    return data, None


def _gunzip(data: bytes, limit: int) -> tuple[bytes, str | None]:
    """Every member of a gzip file, holding no more than `limit` bytes of output (and one step) however it expands.

    zlib builds each call's output twice over and copies the input it has not used yet, so both go in small steps:
    asking one call for all `limit` bytes would double a bomb's peak memory."""
    parts: list[bytes] = []
    size = 0
    view = memoryview(data)
    start = 0  # where the current member begins
    try:
        while view[start : start + 2] == _GZIP_MAGIC:  # members may follow one another (cat a.gz b.gz)
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            fed = start
            pending: bytes | memoryview = b""
            while not member.eof:
                if not pending:
                    pending = view[fed : fed + _GUNZIP_STEP_IN]
                    fed += len(pending)
                chunk = member.decompress(pending, min(limit - size + 1, _GUNZIP_STEP_OUT))
                if not chunk and not pending:
                    return b"", "corrupt gzip: it ends before its compressed data does (truncated?)"
                size += len(chunk)
                if size > limit:
                    return b"", f"gzip content expands past the {limit}-byte limit: not read"
                parts.append(chunk)
                pending = member.unconsumed_tail
            start = fed - len(member.unused_data)
    except zlib.error as exc:
        # zlib says "Error -3 while decompressing data: invalid block type": the part after the colon is the news.
        return b"", f"corrupt gzip: {_first_line(str(exc)).rpartition('decompressing data: ')[2]}"
    if bytes(view[start:]).strip(b"\x00"):  # zero padding after the last member is usual and carries nothing
        return b"", "corrupt gzip: data follows the end of the compressed stream"
    return b"".join(parts), None


def _binary_content(data: bytes) -> str | None:
    """None for text; for binary content, what it looks like (a format's name, or nothing to add)."""
    for magic, name in _BINARY_SIGNATURES:
        if data.startswith(magic):
            return f": {name}"
    sample = data[:_BINARY_SAMPLE]
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return "" if controls > len(sample) * _MOST_CONTROL_BYTES_IN_TEXT else None


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
        # pyarrow skips only empty lines; one of spaces is just as blank, and must be so whatever surrounds it.
        if row.text.strip(_BLANK):
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
        **dict.fromkeys(REQUIRED_INPUT_COLUMNS, blank),
        "raw_line": pa.array([text.rstrip("\r") for text, _, _ in malformed], pa.string()),
    }
    return pa.table([columns[c] for c in REJECT_COLUMNS], schema=REJECT_SCHEMA)


def _every_line_rejected(company: str, body: bytes, positions: dict[str, int], reason: str) -> ParsedFile:
    """A file rejected whole still accounts for each non-blank line after its header: one reject per line, with
    its text and the fields it has. Built in Python, line by line: only a file rejected whole pays for it."""
    lines = [line.rstrip("\r") for line in body.decode("utf-8").split("\n") if line.strip(_BLANK)]
    rows = [_fields_of(line) for line in lines]

    def column(name: str) -> pa.Array:
        at = positions.get(name)
        return pa.array(["" if at is None or at >= len(row) else row[at] for row in rows], pa.string())

    columns = {
        "reason": pa.repeat(pa.scalar(reason, pa.string()), len(lines)),
        **{c: column(c) for c in REQUIRED_INPUT_COLUMNS},
        "raw_line": pa.array(lines, pa.string()),
    }
    rejects = pa.table([columns[c] for c in REJECT_COLUMNS], schema=REJECT_SCHEMA)
    return ParsedFile(company, "rejected", empty_prices(), rejects, len(lines), 0, reason)


def _fields_of(line: str) -> list[str]:
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line]), [])  # one line alone: an open quote must not swallow the next one
    except csv.Error:  # a field past the csv module's size limit, say: the raw line still holds it all
        return []


def _field_rejects(raw: dict[str, pa.ChunkedArray], reasons: pa.ChunkedArray, rejected: pa.ChunkedArray) -> pa.Table:
    blank = pa.repeat(pa.scalar("", pa.string()), len(reasons))
    table = pa.table({"reason": reasons, **raw, "raw_line": blank}, schema=REJECT_SCHEMA)
    return table.filter(rejected)


def _validate(raw: dict[str, pa.ChunkedArray]) -> tuple[pa.Table, pa.ChunkedArray]:
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


# One rule per column, two speeds. A row's verdict must depend on that row alone, so the fast path (one cast of the
# whole column, for the common clean file) may run only where it provably reads exactly what the rule does; any
# other column goes through the rule itself. test_fuzz.py checks this by parsing every row alone.


def _parse_dates(text: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        # The cast reads exactly 4-2-2 ASCII digits forming a real calendar day (refusing 2017-02-30, 2017-1-5,
        # times, signs), which is _ISO_DATE plus year 0000, removed below.
        dates = pc.cast(text, pa.date32())
    except pa.ArrowInvalid:
        shaped = pc.match_substring_regex(text, _ISO_DATE)
        parsed = pc.strptime(pc.if_else(shaped, text, None), format="%Y-%m-%d", unit="s", error_is_null=True)
        # strptime rolls 2017-02-30 over to March 2: keep only dates whose day is the day that was written.
        day_written = pc.cast(pc.utf8_slice_codeunits(pc.if_else(shaped, text, None), 8, 10), pa.int64())
        parsed = pc.if_else(pc.fill_null(pc.equal(pc.day(parsed), day_written), False), parsed, None)
        return pc.cast(parsed, pa.date32())
    return pc.if_else(pc.greater(pc.year(dates), 0), dates, None)


def _parse_numbers(text: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        # The cast reads exactly _NUMBER's decimal and scientific forms, plus the spellings of nan and inf (any
        # case, signed, "infinity"), which the finiteness check refuses as the rule's null would be.
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        shaped = pc.match_substring_regex(text, _NUMBER)
        return pc.cast(pc.if_else(shaped, text, None), pa.float64())


def _parse_volumes(text: pa.ChunkedArray) -> pa.ChunkedArray:
    # The int64 cast also reads hex (0x10), a minus sign (-0) and 19 digits, which _VOLUME refuses: it may only
    # see a column of plain ASCII digit strings of at most 18 bytes. Checking that costs a tenth of the regex.
    lengths = pc.max(pc.binary_length(text)).as_py()
    if pc.all(pc.ascii_is_decimal(text)).as_py() is not False and (lengths or 0) <= _VOLUME_DIGITS:
        return pc.cast(text, pa.int64())
    shaped = pc.match_substring_regex(text, _VOLUME)
    return pc.cast(pc.replace_substring_regex(pc.if_else(shaped, text, None), r"^\+|\.0*$", ""), pa.int64())


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
