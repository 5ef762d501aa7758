"""Property-based: whatever bytes arrive, the parser never raises and accounts for every row."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stock_platform.batch.schema import ARROW_SCHEMA, REJECT_SCHEMA
from stock_platform.batch.transforms import parse_stock_csv, prices_to_csv

HEADERS = ["Date", "Open", "High", "Low", "Close", "Volume", "OpenInt", "Extra", "date ", " VOLUME", "\ufeffDate"]
VALUES = st.one_of(
    st.sampled_from(["2017-11-10", "2017-02-30", "1999-12-31", "0000-01-01", "9999-12-31", "", " ", "nan", "inf",
                     "-inf", "1e308", "1e999", "-0", "0", "12.5", "1,5", '"3"', '"a,b"', "\"", "NULL", "+7", "007",
                     "99999999999999999999", "1.0", "é", "\x00", "\t", "2017-11-10T00:00:00"]),
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
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):  # truncate anywhere, even mid-character
        data = data[: draw(st.integers(0, len(data)))]
    return data


def check(data: bytes) -> None:
    result = parse_stock_csv(data, "fuzz")
    assert result.rows_read == result.rows_loaded + result.rows_rejected + result.duplicates
    assert result.prices.schema == ARROW_SCHEMA and result.rejects.schema == REJECT_SCHEMA
    assert result.status in ("loaded", "empty", "rejected")
    if result.rows_loaded:
        dates = result.prices.column("stock_date").to_pylist()
        assert dates == sorted(set(dates))  # sorted, one row per date
        prices_to_csv(result.prices)  # what COPY will read encodes without error


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
    data = f"Date,Open,High,Low,Close,Volume\n2017-11-10,{huge},1,1,1,1\n2017-11-13,1,1,1,1,{huge}\n2017-11-14,1,1,1,1,1\n"
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
