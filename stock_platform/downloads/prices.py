"""A provider's rows in the Kaggle layout, and the merge of new rows into a company's Stocks/ file. Pure.

The row rules are the batch's (batch/transforms.py): the rows are written out as a Kaggle CSV and read back with
`parse_stock_csv`, so a download accepts exactly the rows the load would, rejects the rest with the same reasons
(a null price is an empty field: "Open is missing"), and keeps the last row of a repeated date.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from stock_platform.batch.transforms import parse_stock_csv
from stock_platform.downloads.providers import RawRow

KAGGLE_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume", "OpenInt")
KAGGLE_HEADER = ",".join(KAGGLE_COLUMNS)
_PRICES = ("open", "high", "low", "close")


class MergeError(ValueError):
    """The Stocks/ file cannot be merged without damaging it; it is left as it is."""


@dataclass(frozen=True)
class PriceRow:
    date: str  # YYYY-MM-DD
    open: float
    high: float
    low: float
    close: float
    volume: int

    def field(self, column: str) -> str:
        """The value under a (case-insensitive) Kaggle column name; OpenInt is always 0, as in Kaggle's files."""
        name = column.strip().lower()
        if name == "date":
            return self.date
        if name in _PRICES:
            return repr(float(getattr(self, name)))
        if name == "volume":
            return str(self.volume)
        return "0" if name == "openint" else ""


@dataclass(frozen=True)
class RejectedRow:
    line: str
    reason: str


@dataclass(frozen=True)
class Normalised:
    """A ticker's answer under the row rules: the rows kept (by date) and the rows rejected, with reasons."""

    rows: tuple[PriceRow, ...]
    rejected: tuple[RejectedRow, ...] = ()
    duplicates: int = 0

    def on(self, day: str) -> tuple[PriceRow, ...]:
        return tuple(r for r in self.rows if r.date == day)


@dataclass(frozen=True)
class Merge:
    """The merged file (None when nothing changed) and the dates it gained or corrected."""

    data: bytes | None
    new_dates: tuple[str, ...]
    corrected_dates: tuple[str, ...]


def normalise(ticker: str, raw: Sequence[RawRow]) -> Normalised:
    if not raw:
        return Normalised(())
    text = KAGGLE_HEADER + "\n" + "".join(",".join((*row, "0")) + "\n" for row in raw)
    parsed = parse_stock_csv(text.encode(), ticker)
    prices = parsed.prices.to_pydict()
    rows = tuple(
        PriceRow(d.isoformat(), o, h, low, c, int(v))
        for d, o, h, low, c, v in zip(
            prices["stock_date"],
            prices["open_value"],
            prices["high_value"],
            prices["low_value"],
            prices["close_value"],
            prices["volume_traded"],
            strict=True,
        )
    )
    rejects = parsed.rejects.to_pylist()
    rejected = tuple(
        RejectedRow(
            r["raw_line"] or ",".join(r[c] or "" for c in ("date", "open", "high", "low", "close", "volume")),
            r["reason"],
        )
        for r in rejects
    )
    return Normalised(rows, rejected, parsed.duplicates)


def kaggle_csv(rows: Sequence[PriceRow]) -> bytes:
    """Rows as a Stocks/ file: Kaggle's header, one line per date."""
    lines = [KAGGLE_HEADER, *(",".join(r.field(c) for c in KAGGLE_COLUMNS) for r in rows)]
    return ("\n".join(lines) + "\n").encode()


def merge_stock_file(existing: bytes | None, rows: Sequence[PriceRow]) -> Merge:
    """`existing` with `rows` merged in by date: a new date is added, a date whose values differ is replaced (and
    counted as corrected), an identical one is left alone. Lines the download does not touch keep their exact text,
    so a merge that changes nothing gives back None and the file is not rewritten."""
    if existing is None or not existing.strip():
        ordered = sorted(rows, key=lambda r: r.date)
        return Merge(kaggle_csv(ordered), tuple(r.date for r in ordered), ()) if ordered else Merge(None, (), ())
    bom = existing.startswith(b"\xef\xbb\xbf")
    try:
        text = existing.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MergeError("the Stocks/ file is not UTF-8 text; left untouched") from None
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.replace("\r\n", "\n").split("\n")
    header_line, body = lines[0], [line for line in lines[1:] if line.strip()]
    header = [name.strip().lower() for name in next(csv.reader([header_line]), [])]
    if "date" not in header:
        raise MergeError(f"the Stocks/ file's header has no Date column ({header_line[:60]!r}); left untouched")
    at = header.index("date")

    keys = [_fields(line)[at].strip() if len(_fields(line)) > at else "" for line in body]
    last_index = {key: i for i, key in enumerate(keys)}
    new: list[str] = []
    corrected: list[str] = []
    for row in sorted(rows, key=lambda r: r.date):
        line = ",".join(row.field(c) for c in header)
        i = last_index.get(row.date)
        if i is None:
            last_index[row.date] = len(body)
            body.append(line)
            keys.append(row.date)
            new.append(row.date)
        elif not _same(_fields(body[i]), header, row):
            body[i] = line  # the batch keeps a date's last valid line: this one
            corrected.append(row.date)
    if not new and not corrected:
        return Merge(None, (), ())
    if new and all(_is_date(k) for k in keys):
        body = [line for _, line in sorted(zip(keys, body, strict=True), key=lambda pair: pair[0])]
    data = newline.join([header_line, *body]) + newline
    return Merge((b"\xef\xbb\xbf" if bom else b"") + data.encode(), tuple(new), tuple(corrected))


def _fields(line: str) -> list[str]:
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return line.split(",")


def _same(fields: list[str], header: list[str], row: PriceRow) -> bool:
    """The existing line holds the row's values (as numbers: 150.5 equals 150.50)."""
    try:
        values = {name: fields[i].strip() for i, name in enumerate(header) if i < len(fields)}
        return all(float(values[n]) == getattr(row, n) for n in _PRICES) and int(float(values["volume"])) == row.volume
    except (KeyError, ValueError):
        return False  # an unreadable line for that date: the download's valid row corrects it


def _is_date(key: str) -> bool:
    try:
        date.fromisoformat(key)
    except ValueError:
        return False
    return len(key) == 10
