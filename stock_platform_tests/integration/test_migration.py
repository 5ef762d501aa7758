"""`stock-platform migrate-legacy` on a table built exactly as the original pipeline left it: nine VARCHAR(56)
columns, no key, filled with COPY from its headerless CSV extract (duplicates, mixed-case names, bad values)."""

import csv
import datetime as dt
import io
import re
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy.engine import make_url

from stock_platform.batch.migration import CONFLICTING_DUPLICATE, migrate_legacy_table
from stock_platform.batch.schema import COLUMN_NAMES, prepare_tables
from stock_platform.batch.selection import is_valid_company
from stock_platform.batch.transforms import parse_stock_csv
from stock_platform.cli import main
from stock_platform.resources.postgres import PostgresResource
from stock_platform_tests.conftest import Stack

pytestmark = pytest.mark.integration

TABLE = "historical_stocks_data"
# The original pipeline's DDL, verbatim.
LEGACY_DDL = (
    "CREATE TABLE {table} (stock_date VARCHAR(56), open_value VARCHAR(56), high_value VARCHAR(56), "
    "low_value VARCHAR(56), close_value VARCHAR(56), volume_traded VARCHAR(56), daily_percent_change VARCHAR(56), "
    "value_change VARCHAR(56), company_name VARCHAR(56))"
)

# (date, open, high, low, close, volume, daily_percent_change, value_change, company); None is an empty field,
# which COPY stores as NULL. The two derived columns hold whatever the original wrote: they are recomputed.
LEGACY_ROWS: list[tuple[str | None, ...]] = [
    ("2017-11-10", "1.23", "1.30", "1.20", "1.25", "1000", "1.6260162601626", "0.02", "aapl"),  # 1
    ("2017-11-10", "1.23", "1.30", "1.20", "1.25", "1000", "1.6260162601626", "0.02", "aapl"),  # 2: exact dup of 1
    ("2017-11-13", "1.25", "1.40", "1.24", "1.35", "2000", "x", "y", "AAPL"),  # 3: conflicting, 4 wins
    ("2017-11-13", "1.26", "1.40", "1.24", "1.36", "2100", None, None, "aapl"),  # 4
    ("2017-11-14", "0", "1", "0", "1", "10", None, None, "Aapl"),  # 5: open 0, percent NULL
    (" 2017-11-15 ", " 1.5 ", "+.5e1", "1e-400", "2.5", "1000.0", None, None, "aapl"),  # 6: spaces, forms
    ("2017-11-16", "10.55", "10.6", "10.5", "10.55", "+7", None, None, "aapl"),  # 7: 10.55 stays 10.55
    ("2017-02-30", "1", "1", "1", "1", "1", None, None, "msft"),  # 8..11: bad dates
    ("10/11/2017", "1", "1", "1", "1", "1", None, None, "msft"),
    ("0000-01-01", "1", "1", "1", "1", "1", None, None, "msft"),
    (None, "1", "1", "1", "1", "1", None, None, "msft"),
    ("2017-11-10", "abc", "1", "1", "1", "1", None, None, "msft"),  # 12..20: bad prices and volumes
    ("2017-11-11", None, "1", "1", "1", "1", None, None, "msft"),
    ("2017-11-12", "1", "1e400", "1", "1", "1", None, None, "msft"),
    ("2017-11-13", "1", "1", "nan", "1", "1", None, None, "msft"),
    ("2017-11-14", "1", "1", "1", "inf", "1", None, None, "msft"),
    ("2017-11-15", "1", "1", "1", "1", "-5", None, None, "msft"),
    ("2017-11-16", "1", "1", "1", "1", "12.5", None, None, "msft"),
    ("2017-11-17", "1", "1", "1", "1", None, None, None, "msft"),
    ("2017-11-20", "1,5", "1", "1", "1", "1", None, None, "msft"),
    ("2017-11-21", "2", "3", "1", "2.5", "100", None, None, "MSFT"),  # 21: the one good msft row
    ("2017-11-10", "5", "6", "4", "5.5", "300", None, None, "ge"),  # 22: kept...
    ("2017-11-10", "abc", "6", "4", "5.5", "300", None, None, "GE"),  # 23: ...a later invalid row does not win
    ("2017-11-10", "1", "1", "1", "1", "1", None, None, None),  # 24: no company
    ("2017-11-10", "1", "1", "1", "1", "1", None, None, "a b"),  # 25: not a company key
    ("2017-11-10", "1", "1", "1", "1", "1", None, None, " ibm "),  # 26: surrounding spaces are ignored
]
EXPECTED_REJECTED = {
    "Date is not a valid ISO date (YYYY-MM-DD)": 4,
    "Open is not a finite number": 3,
    "Volume is not a non-negative integer": 2,
    "Close is not a finite number": 1,
    "High is not a finite number": 1,
    "Low is not a finite number": 1,
    "Open is missing": 1,
    "Volume is missing": 1,
    "company_name is missing": 1,
    "company_name is not a valid company key (letters, digits, _ and -, at most 100)": 1,
}


def csv_lines(rows: list[tuple[str | None, ...]]) -> bytes:
    sink = io.StringIO()
    csv.writer(sink, lineterminator="\n").writerows(rows)
    return sink.getvalue().encode()


def create_legacy(stack: Stack, rows: list[tuple[str | None, ...]] = LEGACY_ROWS, table: str = TABLE) -> None:
    """The legacy table exactly as the original left it: its DDL, then COPY of its headerless extract."""
    with stack.connect() as conn:
        conn.execute(f'SET search_path TO "{stack.schema}"')
        conn.execute(LEGACY_DDL.format(table=table))
        with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv)") as copy:
            copy.write(csv_lines(rows))


def execute(stack: Stack, statement: str) -> None:
    with stack.connect() as conn:
        conn.execute(statement.format(t=f'"{stack.schema}"."{TABLE}"', s=f'"{stack.schema}"'))


def snapshot(stack: Stack, table: str = TABLE) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], set[str]]:
    """Everything a failed or dry migration must leave as it was: the column types, every row where it was
    stored, and which tables exist."""
    types = stack.query(
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (f'"{stack.schema}"."{table}"',),
    )
    rows = stack.query(f'SELECT ctid::text, * FROM "{stack.schema}"."{table}" ORDER BY ctid')
    tables = {r[0] for r in stack.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", (stack.schema,))}
    return types, rows, tables


def platform_load(rows: list[tuple[str | None, ...]]) -> tuple[list[tuple[Any, ...]], Counter[tuple[str, ...]], int]:
    """What the platform itself loads from the same data: each company's rows, in order, as its own CSV file
    through transforms.parse_stock_csv. Returns the rows, the rejects (reason + raw fields) and the duplicates."""
    files: dict[str, list[tuple[str | None, ...]]] = {}
    for row in rows:
        company = (row[8] or "").strip().lower()
        if is_valid_company(company):
            files.setdefault(company, []).append(row[:6])
    prices: list[pa.Table] = []
    rejects: Counter[tuple[str, ...]] = Counter()
    duplicates = 0
    for company, lines in files.items():
        parsed = parse_stock_csv(b"Date,Open,High,Low,Close,Volume\n" + csv_lines(lines), company)
        prices.append(parsed.prices)
        rejects.update(
            (r["reason"], r["date"], r["open"], r["high"], r["low"], r["close"], r["volume"])
            for r in parsed.rejects.to_pylist()
        )
        duplicates += parsed.duplicates
    loaded = [tuple(r[c] for c in COLUMN_NAMES) for t in prices for r in t.to_pylist()]
    return sorted(loaded, key=lambda r: (r[8], r[0])), rejects, duplicates


def reported(out: str, label: str) -> int:
    match = re.search(rf"^{re.escape(label)}\s+([\d,]+)", out, re.MULTILINE)
    assert match, (label, out)
    return int(match.group(1).replace(",", ""))


def test_migrates_in_place_to_what_the_platform_would_have_loaded(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    create_legacy(stack)
    assert main(["migrate-legacy"]) == 0  # schema from STOCK_PLATFORM_DB_SCHEMA, set by the stack fixture
    out = capsys.readouterr().out

    assert reported(out, "rows before:") == 26
    assert reported(out, "rows converted:") == 10
    assert reported(out, "rows rejected:") == 16
    assert all(f"  {reason}: {n}\n" in out for reason, n in EXPECTED_REJECTED.items())
    assert reported(out, "duplicates removed:") == 2
    assert "(1 exact, 1 conflicting: the row stored last was kept" in out
    assert reported(out, "rows lower-cased company:") == 3
    assert reported(out, "rows after:") == 8 and "(4 companies)" in out
    assert "key added: (company_name, stock_date)" in out and "state version 1" in out
    assert out.rstrip().endswith("committed.")

    # The platform's own tables now pass the check every load makes.
    engine = PostgresResource(url=stack.database_url).engine()
    assert prepare_tables(engine, stack.schema, TABLE).created == ()

    expected, expected_rejects, expected_duplicates = platform_load(LEGACY_ROWS)
    assert stack.table_rows() == expected
    assert len(expected) == 8 and expected_duplicates == 2
    by_company = {(r[8], r[0]): r for r in expected}
    assert by_company["aapl", dt.date(2017, 11, 13)][1:6] == (1.26, 1.40, 1.24, 1.36, 2100)  # the last one stored
    assert by_company["aapl", dt.date(2017, 11, 14)][6] is None  # open 0: no percent change
    assert by_company["aapl", dt.date(2017, 11, 15)][1:6] == (1.5, 5.0, 0.0, 2.5, 1000)
    assert by_company["aapl", dt.date(2017, 11, 16)][4] == 10.55
    assert by_company["ge", dt.date(2017, 11, 10)][1] == 5.0
    assert ("ibm", dt.date(2017, 11, 10)) in by_company

    columns = ", ".join(COLUMN_NAMES)
    rejects = stack.query(
        f'SELECT legacy_row, reason, kept_row, {columns} FROM "{stack.schema}"."{TABLE}_migration_rejects" ORDER BY 1'
    )
    assert [r[0] for r in rejects] == [3, *range(8, 21), 23, 24, 25]
    assert rejects[0][1:3] == (CONFLICTING_DUPLICATE, 4)
    assert rejects[0][3:] == LEGACY_ROWS[2]  # the raw values, as stored
    assert Counter(r[1] for r in rejects if r[2] is None) == Counter(EXPECTED_REJECTED)
    # Same reasons, for the same raw fields, as the platform's rejects of the companies it would have read.
    migrated_rejects = Counter(
        (r[1], *(v or "" for v in r[3:9])) for r in rejects if r[2] is None and not r[1].startswith("company_name")
    )
    assert migrated_rejects == expected_rejects

    ledger = stack.query(
        "SELECT company_name, source_etag, row_count, min_date, max_date, run_id "
        f'FROM "{stack.schema}"."{TABLE}_loads" ORDER BY 1'
    )
    assert ledger == [
        ("aapl", "", 5, dt.date(2017, 11, 10), dt.date(2017, 11, 16), "migrate-legacy"),
        ("ge", "", 1, dt.date(2017, 11, 10), dt.date(2017, 11, 10), "migrate-legacy"),
        ("ibm", "", 1, dt.date(2017, 11, 10), dt.date(2017, 11, 10), "migrate-legacy"),
        ("msft", "", 1, dt.date(2017, 11, 21), dt.date(2017, 11, 21), "migrate-legacy"),
    ]
    assert stack.query(f'SELECT version, run_id FROM "{stack.schema}"."{TABLE}_state"') == [(1, "migrate-legacy")]

    # A second run finds nothing to do.
    assert main(["migrate-legacy"]) == 0
    assert "already has the platform's schema: nothing to migrate" in capsys.readouterr().out


def test_dry_run_reports_the_same_and_changes_nothing(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    create_legacy(stack)
    before = snapshot(stack)
    assert main(["migrate-legacy", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "dry run: rolled back, nothing was changed." in dry
    assert snapshot(stack) == before
    assert main(["migrate-legacy"]) == 0
    real = capsys.readouterr().out
    # Only the command line echoed first and the outcome last differ.
    assert dry.splitlines()[1:-1] == real.splitlines()[1:-1]


@pytest.mark.parametrize(
    "failure",
    [
        # Fails in the middle of refilling the table (rows go in by company: aapl, ge, ibm are in, msft fails).
        "CREATE TRIGGER fail BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {s}.fail_on_msft()",
        # Fails after every row is in: a deferred trigger leaves events pending that stop the final ALTER TABLE.
        "CREATE CONSTRAINT TRIGGER fail AFTER INSERT ON {t} DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION {s}.fail_on_msft()",
    ],
    ids=["during-refill", "after-refill"],
)
def test_a_failure_mid_migration_leaves_the_legacy_table_as_it_was(
    stack: Stack, capsys: pytest.CaptureFixture[str], failure: str
) -> None:
    create_legacy(stack)
    execute(
        stack,
        "CREATE FUNCTION {s}.fail_on_msft() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.company_name = 'msft' THEN RAISE EXCEPTION 'simulated failure'; END IF; RETURN NEW; END $$",
    )
    execute(stack, failure)
    before = snapshot(stack)
    assert main(["migrate-legacy"]) == 1
    captured = capsys.readouterr()
    assert "the migration failed and was rolled back, nothing was changed" in captured.err
    assert "committed." not in captured.out
    assert snapshot(stack) == before
    assert before[2] == {TABLE}  # no rejects, ledger or state table left behind


def test_the_parsers_agree_with_the_platform_on_awkward_values(stack: Stack) -> None:
    prices = [
        "1", "1.", ".5", "+.5e1", "-2", "00012.50", "1E5", "1e+5", "1e308", "1.7976931348623157e308",
        "1.7976931348623158e308", "1.8e308", "1e400", "1e-400", "-1e-400", "4e-324", "2e-324", "3e-324",
        "1e99999", "1e-99999", "0e99999", "0.000e5000", "nan", "NaN", "inf", "-inf", "Infinity", "0x10", "1_000",
        "1.2.3", "e5", ".", "+", "-", "", " ", "1 2", "12abc", "\u0661\u0662", " 7 ", "\t8\t",
    ]  # fmt: skip
    dates = [
        "2017-11-10", "2016-02-29", "2017-02-29", "2017-04-31", "2017-13-01", "2017-00-10", "2017-01-00",
        "0000-01-01", "0001-01-01", "9999-12-31", "2017-1-5", "20171110", "2017-11-10T00:00", "2017/11/10",
        "+2017-11-11", "12017-11-10", "abc", "",
    ]  # fmt: skip
    volumes = [
        "0", "007", "+7", "7.", "7.000", "7.5", "-7", "-0", "1e3", "999999999999999999", "1000000000000000000",
        " 12 ", "", "abc", "0x1", "\u0661",
    ]  # fmt: skip
    day = dt.date(2000, 1, 1)
    rows: list[tuple[str | None, ...]] = []
    for i, value in enumerate(prices):  # tested as the high price: open and close stay plain
        rows.append(((day + dt.timedelta(i)).isoformat(), "1", value, "1", "2", "5", None, None, "prices"))
    for value in dates:
        rows.append((value, "1", "1", "1", "2", "5", None, None, "dates"))
    for i, value in enumerate(volumes):
        rows.append(((day + dt.timedelta(i)).isoformat(), "1", "1", "1", "2", value, None, None, "volumes"))
    create_legacy(stack, rows)
    engine = PostgresResource(url=stack.database_url).engine()
    report = migrate_legacy_table(engine, stack.schema, TABLE)
    expected, expected_rejects, expected_duplicates = platform_load(rows)
    assert stack.table_rows() == expected
    assert report.rows_after == len(expected) and report.duplicates == expected_duplicates
    assert dict(report.rejected) == dict(Counter(reason for reason, *_ in expected_rejects.elements()))
    assert report.reconciles


def test_configured_table_and_options(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    create_legacy(stack, LEGACY_ROWS[:3], table="prices")
    monkeypatch.setenv("STOCK_PLATFORM_TABLE", "prices")
    assert main(["migrate-legacy"]) == 0
    assert reported(capsys.readouterr().out, "rows after:") == 2
    tables = {r[0] for r in stack.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", (stack.schema,))}
    assert tables == {"prices", "prices_loads", "prices_state", "prices_migration_rejects"}
    monkeypatch.delenv("STOCK_PLATFORM_TABLE")
    monkeypatch.delenv("STOCK_PLATFORM_DB_SCHEMA")
    create_legacy(stack, LEGACY_ROWS[:2])
    assert main(["migrate-legacy", "--schema", stack.schema, "--table", TABLE]) == 0
    assert reported(capsys.readouterr().out, "rows after:") == 1


def test_never_prints_the_password(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    create_legacy(stack, LEGACY_ROWS[:2])
    secret = "s3cret-Pa55"
    url = make_url(stack.database_url).set(password=secret).render_as_string(hide_password=False)
    monkeypatch.setenv("STOCK_PLATFORM_DATABASE_URL", url)
    assert main(["migrate-legacy", "--dry-run"]) == 0
    assert main(["migrate-legacy", "--table", "missing_table"]) == 1
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    assert ":***@" in captured.out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (None, "does not exist: there is nothing to migrate"),
        ("drift", "column close_value: expected double precision, found numeric(6,1)"),
        ("rejects", '_migration_rejects" already exists'),
        ("ledger", "column row_count: expected bigint, found integer"),
    ],
)
def test_refuses_what_it_cannot_migrate_and_changes_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str], setup: str | None, message: str
) -> None:
    if setup == "drift":
        prepare_tables(PostgresResource(url=stack.database_url).engine(), stack.schema, TABLE)
        execute(stack, "ALTER TABLE {t} ALTER COLUMN close_value TYPE numeric(6,1)")
    elif setup == "rejects":
        create_legacy(stack)
        execute(stack, f"CREATE TABLE {{s}}.{TABLE}_migration_rejects (x int)")
    elif setup == "ledger":
        create_legacy(stack)
        execute(stack, f"CREATE TABLE {{s}}.{TABLE}_loads (company_name text PRIMARY KEY, row_count integer)")
    before = snapshot(stack) if setup else None
    assert main(["migrate-legacy"]) == 1
    captured = capsys.readouterr()
    assert "nothing was changed" in captured.err and message in captured.err
    if before is not None:
        assert snapshot(stack) == before


def test_usage_errors(stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["migrate-legacy", "--table", "bad name"]) == 2
    assert "not a valid identifier" in capsys.readouterr().err
    monkeypatch.delenv("STOCK_PLATFORM_DATABASE_URL")
    assert main(["migrate-legacy"]) == 2
    assert "STOCK_PLATFORM_DATABASE_URL is not set" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2


def test_an_empty_legacy_table_becomes_an_empty_platform_table(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    create_legacy(stack, [])
    assert main(["migrate-legacy"]) == 0
    assert reported(capsys.readouterr().out, "rows after:") == 0
    assert prepare_tables(PostgresResource(url=stack.database_url).engine(), stack.schema, TABLE).created == ()


def test_prices_whose_derived_values_overflow_stop_the_migration_by_name(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    create_legacy(
        stack,
        [
            *LEGACY_ROWS[:2],
            ("2017-11-10", "1e-200", "1", "1", "1e200", "1", None, None, "big"),  # percent change 1e402
            ("2017-11-11", "-1.7e308", "1", "1", "1.7e308", "1", None, None, "big"),  # close - open overflows
            ("2017-11-12", "1e300", "1e300", "1", "1e300", "1", None, None, "big"),  # absurd but computable
        ],
    )
    before = snapshot(stack)
    assert main(["migrate-legacy"]) == 1
    err = capsys.readouterr().err
    assert "2 row(s) have prices whose value_change or daily_percent_change does not fit in double precision" in err
    assert "big 2017-11-10 (open 1e-200, close 1e200); big 2017-11-11 (open -1.7e308, close 1.7e308)" in err
    assert snapshot(stack) == before
