"""The row contract (README "Data rules"), one rule per case, on the pure parser."""

import datetime as dt

import pytest

from stock_platform.batch.schema import ARROW_SCHEMA, COLUMN_NAMES, REJECT_COLUMNS
from stock_platform.batch.transforms import parse_stock_csv, rejects_to_csv

HEADER = "Date,Open,High,Low,Close,Volume,OpenInt\n"
GOOD = "2017-11-10,10.0,11.0,9.5,10.5,1000,0\n"


def parse(text: str | bytes, company: str = "aapl"):
    data = text.encode() if isinstance(text, str) else text
    result = parse_stock_csv(data, company)
    assert result.reconciles, (result.rows_read, result.rows_loaded, result.rows_rejected, result.duplicates)
    return result


def rows(result) -> list[dict]:
    return result.prices.to_pylist()


@pytest.mark.parametrize(
    "header",
    [
        "Date,Open,High,Low,Close,Volume,OpenInt",
        "date,open,high,low,close,volume,openint",
        " DATE , Open ,HIGH, low,Close , VOLUME ,OpenInt",
        "\ufeffDate,Open,High,Low,Close,Volume,OpenInt",
        "Date,Open,High,Low,Close,Volume",  # OpenInt is optional
        "Volume,Close,Low,High,Open,Date",  # any order
        "Date,Open,High,Low,Close,Volume,OpenInt,Adj Close,Note",  # other columns ignored
    ],
)
def test_header_variants_are_accepted(header: str) -> None:
    names = [h.strip().lstrip("\ufeff").lower() for h in header.split(",")]
    values = {"date": "2017-11-10", "open": "10.0", "high": "11.0", "low": "9.5", "close": "10.5", "volume": "1000"}
    line = ",".join(values.get(n, "x") for n in names)
    result = parse(f"{header}\n{line}\n")
    assert result.status == "loaded"
    assert rows(result) == [
        {
            "stock_date": dt.date(2017, 11, 10),
            "open_value": 10.0,
            "high_value": 11.0,
            "low_value": 9.5,
            "close_value": 10.5,
            "volume_traded": 1000,
            "daily_percent_change": 5.0,
            "value_change": 0.5,
            "company_name": "aapl",
        }
    ]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_lf_and_crlf(newline: str) -> None:
    text = (HEADER + GOOD + "2017-11-13,10.5,11.0,10.0,10.0,2000,0\n").replace("\n", newline)
    result = parse(text)
    assert result.rows_loaded == 2 and result.rows_rejected == 0
    assert [r["stock_date"] for r in rows(result)] == [dt.date(2017, 11, 10), dt.date(2017, 11, 13)]


def test_utf8_bom_bytes() -> None:
    assert parse(b"\xef\xbb\xbf" + (HEADER + GOOD).encode()).rows_loaded == 1


@pytest.mark.parametrize("missing", ["Date", "Open", "High", "Low", "Close", "Volume"])
def test_missing_required_column_rejects_the_whole_file_with_the_reason(missing: str) -> None:
    header = [h for h in HEADER.strip().split(",") if h != missing]
    result = parse(
        ",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n" + ",".join(["2"] * len(header)) + "\n"
    )
    assert result.status == "rejected"
    assert result.rows_loaded == 0 and result.rows_rejected == 2 and result.rows_read == 2
    assert result.reason == f"missing required column(s): {missing.lower()}"
    assert set(result.rejects.column("reason").to_pylist()) == {result.reason}


@pytest.mark.parametrize("text", ["", "   \n", HEADER, HEADER.strip(), HEADER + "\n\n"])
def test_empty_and_header_only_files_are_empty_not_errors(text: str) -> None:
    result = parse(text)
    assert result.status == "empty"
    assert result.rows_read == 0 and result.rows_loaded == 0 and result.rows_rejected == 0
    assert result.prices.schema == ARROW_SCHEMA


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2017-02-30,10,11,9,10,100,0", "Date is not a valid ISO date (YYYY-MM-DD)"),
        ("2017-13-01,10,11,9,10,100,0", "Date is not a valid ISO date (YYYY-MM-DD)"),
        ("11/10/2017,10,11,9,10,100,0", "Date is not a valid ISO date (YYYY-MM-DD)"),
        ("2017-1-5,10,11,9,10,100,0", "Date is not a valid ISO date (YYYY-MM-DD)"),
        ("0000-01-01,10,11,9,10,100,0", "Date is not a valid ISO date (YYYY-MM-DD)"),
        (",10,11,9,10,100,0", "Date is not a valid ISO date (YYYY-MM-DD)"),
        ("2017-11-10,,11,9,10,100,0", "Open is missing"),
        ("2017-11-10,10,,9,10,100,0", "High is missing"),
        ("2017-11-10,10,11,,10,100,0", "Low is missing"),
        ("2017-11-10,10,11,9,,100,0", "Close is missing"),
        ("2017-11-10,abc,11,9,10,100,0", "Open is not a finite number"),
        ("2017-11-10,10,nan,9,10,100,0", "High is not a finite number"),
        ("2017-11-10,10,11,inf,10,100,0", "Low is not a finite number"),
        ("2017-11-10,10,11,9,1e999,100,0", "Close is not a finite number"),
        ("2017-11-10,10,11,9,10,,0", "Volume is missing"),
        ("2017-11-10,10,11,9,10,-5,0", "Volume is not a non-negative integer"),
        ("2017-11-10,10,11,9,10,1.5,0", "Volume is not a non-negative integer"),
        ("2017-11-10,10,11,9,10,12x,0", "Volume is not a non-negative integer"),
        ("2017-11-10,10,11,9,10,99999999999999999999,0", "Volume is not a non-negative integer"),
        ("2017-11-10,10,11", "expected 7 fields, found 3"),
    ],
)
def test_bad_rows_are_rejected_with_their_reason(line: str, reason: str) -> None:
    result = parse(HEADER + GOOD + line + "\n")
    assert result.status == "loaded"
    assert result.rows_read == 2 and result.rows_loaded == 1 and result.rows_rejected == 1
    reject = result.rejects.to_pylist()[0]
    assert reject["reason"] == reason
    # Nothing is lost: the row's fields (or its raw text) are kept with the reason.
    kept = reject["raw_line"] or ",".join(reject[c] for c in ("date", "open", "high", "low", "close", "volume"))
    assert kept.startswith(line.split(",", maxsplit=1)[0])


@pytest.mark.parametrize(("volume", "expected"), [("0", 0), ("1000", 1000), ("+7", 7), ("1000.0", 1000), (" 42 ", 42)])
def test_volume_forms_that_are_integers(volume: str, expected: int) -> None:
    result = parse(HEADER + f"2017-11-10,10,11,9,10,{volume},0\n")
    assert rows(result)[0]["volume_traded"] == expected


@pytest.mark.parametrize("price", ["1e2", "-3.5", ".5", "5.", "+2"])
def test_number_forms_that_are_prices(price: str) -> None:
    result = parse(HEADER + f"2017-11-10,{price},11,9,10,1,0\n")
    assert result.rows_loaded == 1
    assert rows(result)[0]["open_value"] == float(price)


def test_repeated_date_keeps_the_last_occurrence() -> None:
    text = HEADER + "2017-11-10,1,1,1,1,1,0\n2017-11-13,2,2,2,2,2,0\n2017-11-10,3,3,3,3,3,0\n2017-11-10,4,4,4,4,4,0\n"
    result = parse(text)
    assert result.rows_read == 4 and result.rows_loaded == 2 and result.duplicates == 2
    assert [(r["stock_date"].day, r["open_value"]) for r in rows(result)] == [(10, 4.0), (13, 2.0)]


def test_a_rejected_row_does_not_count_as_the_last_occurrence() -> None:
    result = parse(HEADER + "2017-11-10,1,1,1,1,1,0\n2017-11-10,x,1,1,1,1,0\n")
    assert result.rows_loaded == 1 and result.rows_rejected == 1 and result.duplicates == 0
    assert rows(result)[0]["open_value"] == 1.0


@pytest.mark.parametrize(
    ("open_", "close", "percent", "change"),
    [
        ("10", "10.5", 5.0, 0.5),
        ("4", "3", -25.0, -1.0),
        ("0", "1.5", None, 1.5),  # NULL when open is 0
        ("0.1", "0.3", (0.3 - 0.1) / 0.1 * 100, 0.3 - 0.1),  # float arithmetic, never truncated
    ],
)
def test_derived_columns(open_: str, close: str, percent: float | None, change: float) -> None:
    row = rows(parse(HEADER + f"2017-11-10,{open_},20,0,{close},1,0\n"))[0]
    assert row["value_change"] == change
    assert row["daily_percent_change"] == percent


@pytest.mark.parametrize("company", ["aapl", "abr_c", "tdw-ws-b", "AAPL"])
def test_company_name_is_taken_as_written(company: str) -> None:
    assert rows(parse(HEADER + GOOD, company))[0]["company_name"] == company


def test_suspicious_but_parseable_values_are_kept() -> None:
    text = HEADER + "2017-11-10,10,9,11,12,5,0\n2017-11-13,-1,-1,-2,-1,0,0\n"  # low > high, close > high, negative
    result = parse(text)
    assert result.rows_loaded == 2 and result.rows_rejected == 0


def test_rows_come_out_sorted_by_date_in_table_columns() -> None:
    result = parse(HEADER + "2017-11-13,1,1,1,1,1,0\n2017-11-10,2,2,2,2,2,0\n")
    assert result.prices.column_names == list(COLUMN_NAMES)
    assert [r["stock_date"].day for r in rows(result)] == [10, 13]


def test_quoted_fields_and_latin1_bytes_do_not_break_the_parse() -> None:
    data = (HEADER + '"2017-11-10","10","11","9","10","100","0"\n').encode() + b"2017-11-13,caf\xe9,1,1,1,1,0\n"
    result = parse(data)
    assert result.rows_loaded == 1 and result.rows_rejected == 1
    assert result.rejects.to_pylist()[0]["open"] == "café"


def test_unterminated_quote_keeps_every_line_in_the_rejects() -> None:
    result = parse(HEADER + '2017-11-10,"10,11,9,10,100,0\n2017-11-13,1,1,1,1,1,0\n')
    # The open quote swallows the line break, so CSV sees one record; its raw text keeps both lines.
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (1, 0, 1)
    assert result.rejects.to_pylist()[0]["raw_line"] == '2017-11-10,"10,11,9,10,100,0\n2017-11-13,1,1,1,1,1,0'


def test_rejects_csv_has_the_reason_column_and_every_field() -> None:
    result = parse(HEADER + GOOD + "2017-11-13,x,1,1,1,1,0\n")
    lines = rejects_to_csv(result.rejects).decode().splitlines()
    assert lines[0] == ",".join(f'"{c}"' for c in REJECT_COLUMNS)
    assert "Open is not a finite number" in lines[1] and '"x"' in lines[1]


# A row whose every field is bad pushes each column off pyarrow's one-cast fast path, so a value parsed next to it
# takes the fallback path; parsed alone (or next to good rows) it takes the fast path.
EVERY_COLUMN_BAD = "x,x,x,x,x,x,0\n"
TRICKY_VALUES = {
    "date": [
        "2017-11-10", "0000-01-01", "0001-01-01", "2016-02-29", "2017-02-29", "+2017-11-10", "20171110",
        "2017-11-10T00:00", "2017-11-10 00:00:00", "١٢٣٤-01-01", " 2017-11-10\u00a0",
    ],
    "open": [
        "0x10", "0X1p3", "nan", "NaN", "-nan", "inf", "+Infinity", "-INF", "1e999", "+2", "2+", "1_000", "١٢", "１２",
        "1e3", "-0", ".5", "5.", " 5 ", "\u00a05", "1,5", "1d5", "0b1",
    ],
    "volume": [
        "0x10", "0XFF", "0x0", "-0", "-00", "+0", "007", "1000.0", "1.", "1e3", "1_000", "١٢", "１２",
        "999999999999999999", "1000000000000000000", "9223372036854775807", "9223372036854775808", " 42 ",
    ],
}  # fmt: skip


def verdict(result) -> list:
    """What happened to the one row under test: its loaded values, or its reject reason."""
    loaded = [r for r in rows(result) if r["stock_date"] != dt.date(2017, 11, 14)]
    return [("loaded", r) for r in loaded] + [
        ("rejected", r["reason"]) for r in result.rejects.to_pylist() if r["date"] != "x"
    ]


@pytest.mark.parametrize(
    ("column", "value"), [(column, value) for column, values in TRICKY_VALUES.items() for value in values]
)
def test_a_value_gets_the_same_verdict_whatever_its_neighbours(column: str, value: str) -> None:
    fields = {"date": "2017-11-10", "open": "10", "high": "11", "low": "9", "close": "10", "volume": "100"}
    line = ",".join({**fields, column: value}.values()) + ",0\n"
    alone = parse(HEADER + line)
    with_bad_neighbour = parse(HEADER + line + EVERY_COLUMN_BAD)
    with_good_neighbour = parse(HEADER + line + "2017-11-14,1,1,1,1,1,0\n")
    assert len(verdict(alone)) == 1
    assert verdict(alone) == verdict(with_bad_neighbour) == verdict(with_good_neighbour)


@pytest.mark.parametrize("volume", ["0x10", "0XFF", "0x0", "-0", "-00", "1000000000000000000", "9223372036854775807"])
def test_volumes_that_are_not_decimal_non_negative_integers_of_at_most_18_digits_are_rejected(volume: str) -> None:
    result = parse(HEADER + f"2017-11-10,10,11,9,10,{volume},0\n")
    assert result.rows_loaded == 0
    assert result.rejects.column("reason").to_pylist() == ["Volume is not a non-negative integer"]
