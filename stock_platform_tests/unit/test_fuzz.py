"""Property-based: whatever bytes arrive, the parser never raises and accounts for every row, judging each row alone."""

import gzip

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stock_platform.batch.pgbinary import encode_rows
from stock_platform.batch.schema import ARROW_SCHEMA, REJECT_SCHEMA
from stock_platform.batch.transforms import ParsedFile, parse_stock_csv

HEADERS = ["Date", "Open", "High", "Low", "Close", "Volume", "OpenInt", "Extra", "date ", " VOLUME", "\ufeffDate"]
ODD_VALUES = [
    "2017-11-10", "2017-02-30", "1999-12-31", "0000-01-01", "9999-12-31", "", " ", "nan", "inf", "-inf", "1e308",
    "1e999", "-0", "0", "12.5", "1,5", '"3"', '"a,b"', '"', "NULL", "+7", "007", "99999999999999999999", "1.0",
    "é", "\x00", "\t", "2017-11-10T00:00:00",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


@st.composite
def csv_files(draw) -> bytes:
    header = draw(st.lists(st.sampled_from(HEADERS), min_size=0, max_size=9))
    delimiter = draw(st.sampled_from([",", ",", ",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    rows = draw(st.lists(st.lists(VALUES, min_size=0, max_size=10), max_size=30))
    text = delimiter.join(header) + newline + newline.join(delimiter.join(r) for r in rows)
    if draw(st.booleans()):
        text += newline
    data = encode(text, draw(st.sampled_from([*ENCODINGS, "latin-1"])))
    if draw(st.booleans()):  # truncate anywhere, even mid-character
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.integers(0, 3)) == 0:
        data = gzip.compress(data)
        if draw(st.booleans()):  # a corrupt or cut gzip
            cut = draw(st.integers(0, len(data)))
            data = data[:cut] + draw(st.binary(max_size=3)) + data[cut + 1 :]
    return data


# Every encoding the parser reads, each with the byte-order mark that announces it (none for plain UTF-8).
BOMS = {
    "utf-16-le": b"\xff\xfe",
    "utf-16-be": b"\xfe\xff",
    "utf-32-le": b"\xff\xfe\x00\x00",
    "utf-32-be": b"\x00\x00\xfe\xff",
}
ENCODINGS = ["utf-8", "utf-8-sig", *BOMS]


def encode(text: str, encoding: str) -> bytes:
    return BOMS.get(encoding, b"") + text.encode(encoding, errors="replace")


def check(data: bytes) -> None:
    result = parse_stock_csv(data, "fuzz")
    assert result.rows_read == result.rows_loaded + result.rows_rejected + result.duplicates
    assert result.prices.schema == ARROW_SCHEMA and result.rejects.schema == REJECT_SCHEMA
    assert result.status in ("loaded", "empty", "rejected")
    if result.status == "rejected":  # rejected whole: unread, or every line kept with its raw text
        assert result.rows_loaded == 0 and result.reason
        assert all(result.rejects.column("raw_line").to_pylist())
    if result.rows_loaded:
        dates = result.prices.column("stock_date").to_pylist()
        assert dates == sorted(set(dates))  # sorted, one row per date
        encode_rows(result.prices)  # what the load sends COPY encodes without error


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files())
def test_structured_garbage_is_accounted_for(data: bytes) -> None:
    check(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    check(data)


def test_very_long_lines_and_huge_numbers() -> None:
    huge = "9" * 1_000_000  # a one-megabyte line: no line-length limit applies below the file-size limit
    data = (
        f"Date,Open,High,Low,Close,Volume\n2017-11-10,{huge},1,1,1,1\n2017-11-13,1,1,1,1,{huge}\n2017-11-14,1,1,1,1,1\n"
    )
    result = parse_stock_csv(data.encode(), "long")
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 1, 2)
    assert [r["reason"] for r in result.rejects.to_pylist()] == [
        "Open is not a finite number",
        "Volume is not a non-negative integer",
    ]
    assert len(result.rejects.to_pylist()[0]["open"]) == 1_000_000  # kept whole in the rejects


def test_cr_only_line_ends() -> None:
    result = parse_stock_csv(b"Date,Open,High,Low,Close,Volume\r2017-11-10,1,1,1,1,1\r2017-11-13,1,1,1,1,1\r", "mac")
    assert result.rows_loaded == 2


# Metamorphic: a row's verdict (its loaded values, or its reject reason) is a function of that row and the header
# alone. Parsing the whole file must therefore agree with parsing each of its lines alone under the same header,
# up to the one rule that does look across rows: a repeated date keeps its last valid occurrence.
REQUIRED = ["Date", "Open", "High", "Low", "Close", "Volume"]
TRICKY = [
    "0x10", "0XFF", "-0", "+0", "-00", "007", "1000.0", "1.", ".5", "1e3", "1E-2", "1_000", "١٢", "１２", "nan", "-NaN",
    "inf", "+Infinity", "1e999", "0x1p3", "2+", "", " ", "\u00a07\u2003", "999999999999999999", "1000000000000000000",
    "9223372036854775807", "2016-02-29", "2017-02-29", "0000-01-01", "20171110", "2017-11-10T00:00", "+2017-11-10",
    "\u2028", "é",
]  # fmt: skip
JUNK = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='",\r\n'), max_size=8)
GOOD = {
    "date": st.sampled_from(["2017-11-10", "2017-11-13", "2017-11-14", " 2017-11-15 "]),
    "price": st.one_of(st.floats(-1e6, 1e6).map(repr), st.decimals(-1000, 1000, places=3).map(str)),
    "volume": st.one_of(st.integers(0, 10**19).map(str), st.integers(0, 10**6).map(str)),
    "other": JUNK,
}
BAD = st.one_of(st.sampled_from(TRICKY), JUNK)
KIND = {"date": "date", "open": "price", "high": "price", "low": "price", "close": "price", "volume": "volume"}


@st.composite
def files_of_lines(draw) -> tuple[str, list[str], str, str]:
    names = draw(st.permutations([*REQUIRED, *draw(st.lists(st.sampled_from(["OpenInt", "Note"]), max_size=2))]))
    if draw(st.integers(0, 9)) == 0:
        names = names[1:]  # now and then a required column is missing: every row is rejected for it
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        # Mostly good fields, so that a row with one odd value also has neighbours that are clean or bad elsewhere.
        fields = [
            draw(BAD if draw(st.integers(0, 5)) == 0 else GOOD[KIND.get(name.lower(), "other")]) for name in names
        ]
        if draw(st.integers(0, 9)) == 0:  # a line with the wrong number of fields
            fields = fields[: draw(st.integers(0, len(fields) - 1))] or [draw(BAD)]
        quoted = draw(st.lists(st.booleans(), min_size=len(fields), max_size=len(fields)))
        line = ",".join(f'"{f}"' if q else f for f, q in zip(fields, quoted, strict=True))
        lines.append(draw(st.sampled_from(["", " ", "\t ", "\u00a0"])) if draw(st.integers(0, 19)) == 0 else line)
    return ",".join(names), lines, draw(st.sampled_from(["\n", "\r\n"])), draw(st.sampled_from(ENCODINGS))


def exact(row: dict) -> tuple:
    return tuple(repr(v) for v in row.values())  # repr tells -0.0 from 0.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files_of_lines())
def test_each_row_is_judged_alone(file: tuple[str, list[str], str, str]) -> None:
    header, lines, newline, encoding = file
    gzipped = len(lines) % 2 == 0  # half the files, whole and alone alike, arrive compressed

    def parse(text: str) -> ParsedFile:
        data = encode(text, encoding)
        return parse_stock_csv(gzip.compress(data) if gzipped else data, "meta")

    whole = parse(header + newline + newline.join(lines) + newline)
    alone = [parse(header + newline + line + newline) for line in lines]

    expected_rejects = sorted(exact(r) for a in alone for r in a.rejects.to_pylist())
    assert sorted(exact(r) for r in whole.rejects.to_pylist()) == expected_rejects
    loaded = [r for a in alone for r in a.prices.to_pylist()]
    last_per_date = {r["stock_date"]: r for r in loaded}
    assert [exact(r) for r in whole.prices.to_pylist()] == [exact(last_per_date[d]) for d in sorted(last_per_date)]
    assert whole.duplicates == len(loaded) - len(last_per_date)
    assert whole.rows_read == sum(a.rows_read for a in alone)
