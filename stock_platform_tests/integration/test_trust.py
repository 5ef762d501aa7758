"""The platform says exactly what happened: table, extract, ledger and messages compared before and after faults,
bad lists, renamed files and companies that leave the list."""

import csv
import io

import dagster as dg
import pytest

from stock_platform.batch.summary import CompanyStatus
from stock_platform.local.report import execute_batch
from stock_platform.notifications.messages import format_notification
from stock_platform.notifications.sensors import run_facts
from stock_platform_tests.faults import FlakyProxy

pytestmark = pytest.mark.integration
HEADER = b"Date,Open,High,Low,Close,Volume,OpenInt\n"


def rows(n: int, close: float = 10.5) -> bytes:
    return b"".join(f"2017-11-{d:02d},10,11,9,{close},{100 + d},0\n".encode() for d in range(1, n + 1))


def put_list(stack, *entries: str) -> None:
    stack.put("CompanyNames/top_companies.txt", ", ".join(f"'{e}'" for e in entries).encode())


def message(instance: dg.DagsterInstance, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return format_notification(run_facts(instance, run, None), "P").body


def run_with_extract_uploads_failing(stack, instance, monkeypatch):
    """One batch run behind a proxy that answers 500 to every write under Output/; (result, faults injected)."""
    fault = lambda method, path, n: 500 if method in ("PUT", "POST") and "/Output/" in path else None  # noqa: E731
    with FlakyProxy(stack.endpoint, fault) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("STOCK_PLATFORM_S3_MAX_ATTEMPTS", "2")
        failed = execute_batch(instance=instance)
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    return failed, proxy.injected


def extract_rows(stack) -> list[list[str]]:
    return list(csv.reader(io.StringIO(stack.get("Output/historical_stock_data.csv").decode())))


def test_a_failed_extract_upload_is_reported_and_the_next_run_rewrites_the_stale_extract(stack, instance, monkeypatch):
    put_list(stack, "aapl.us.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(3))
    assert execute_batch(instance=instance).success
    old_extract = extract_rows(stack)

    stack.put("Stocks/aapl.us.txt", HEADER + rows(3, close=12.25))  # new closing prices
    failed, injected = run_with_extract_uploads_failing(stack, instance, monkeypatch)
    assert not failed.success and injected >= 2
    # The table did change, and everything the user reads says so.
    assert stack.query("SELECT DISTINCT close_value FROM {t}") == [(12.25,)]
    assert failed.summary is not None and failed.summary.commit is not None
    assert failed.summary.commit.companies == ("aapl",) and failed.summary.commit.rows_updated == 3
    body = message(instance, failed.run_id)
    assert "Committed: 1 companies' rows replaced" in body and "Committed: nothing" not in body
    assert extract_rows(stack) == old_extract  # the old extract is still there...

    again = execute_batch(instance=instance)  # ...and the next run, with no input changed, rewrites it
    assert again.success and again.summary.commit is None
    assert again.summary.extract is not None and again.summary.extract.regenerated
    assert [r[4] for r in extract_rows(stack)] == ["12.25"] * 3
    third = execute_batch(instance=instance)
    assert third.summary.extract is not None and not third.summary.extract.regenerated  # now current


def test_a_rolled_back_run_says_nothing_was_committed_and_gives_the_real_row_count(stack, instance) -> None:
    put_list(stack, "aapl.us.csv", "msft.us.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(4))
    stack.put("Stocks/msft.us.txt", HEADER + rows(4))
    assert execute_batch(instance=instance).success
    stack.put("Stocks/msft.us.txt", HEADER + rows(6))
    with stack.connect() as conn:  # a constraint the new rows break: PostgreSQL rolls the load back
        conn.execute(
            f'ALTER TABLE "{stack.schema}"."{stack.table}" ADD CONSTRAINT small_volume '
            "CHECK (volume_traded < 105) NOT VALID"
        )
    failed = execute_batch(instance=instance)
    assert not failed.success
    summary = failed.summary
    assert summary is not None and summary.commit is None
    assert summary.processed == ["msft"] and summary.rows.valid == 6
    assert summary.table is not None and summary.table.rows == 8
    body = message(instance, failed.run_id)
    assert "Committed: nothing; the table was not changed by this run" in body
    assert "Table now: 8 rows" in body
    assert "rows loaded" not in body.lower()


def test_case_different_file_names_are_one_ambiguous_company(stack, instance) -> None:
    put_list(stack, "aapl.us.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(3))
    first = execute_batch(instance=instance)
    assert first.success
    before = stack.table_rows()

    stack.put("Stocks/AAPL.us.txt", HEADER + rows(5, close=99.0))
    second = execute_batch(instance=instance)
    assert second.summary is not None
    assert second.summary.ambiguous == {"aapl": ("AAPL.us.txt", "aapl.us.txt")}
    assert second.summary.names(CompanyStatus.AMBIGUOUS) == ["aapl"] and second.summary.commit is None
    assert stack.table_rows() == before  # neither file replaced the other
    assert stack.query("SELECT DISTINCT company_name FROM {t}") == [("aapl",)]
    assert "Ambiguous, not loaded: aapl has several files (AAPL.us.txt, aapl.us.txt)" in message(
        instance, second.run_id
    )

    stack.s3.delete_object(Bucket=stack.bucket, Key="Stocks/aapl.us.txt")  # the user keeps one
    third = execute_batch(instance=instance)
    assert third.success and third.summary.names(CompanyStatus.LOADED) == ["aapl"]
    assert stack.query("SELECT company_name, count(*), max(close_value) FROM {t} GROUP BY 1") == [("aapl", 5, 99.0)]
    assert instance.get_dynamic_partitions("company") == ["aapl"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "is empty"), (b" ,\n''\n", "is empty"), (b"\xff\xfe\x00\xd8\x00", "not readable text")],
)
def test_an_empty_or_unreadable_company_list_fails_and_changes_nothing(stack, instance, content, reason) -> None:
    put_list(stack, "aapl.us.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(3))
    assert execute_batch(instance=instance).success
    before = stack.table_rows()
    stack.put("CompanyNames/top_companies.txt", content)
    failed = execute_batch(instance=instance)
    assert not failed.success and reason in (failed.error or "")
    assert stack.table_rows() == before
    assert reason in message(instance, failed.run_id)


def test_companies_that_leave_the_list_are_named_and_pruned_only_on_request(stack, instance) -> None:
    put_list(stack, "aapl.us.csv", "msft.us.csv", "nvda.us.csv")
    for company in ("aapl", "msft", "nvda"):
        stack.put(f"Stocks/{company}.us.txt", HEADER + rows(3))
    assert execute_batch(instance=instance).success
    put_list(stack, "aapl.us.csv", "msft.us.csv")  # nvda leaves the list
    stack.s3.delete_object(Bucket=stack.bucket, Key="Stocks/msft.us.txt")  # msft loses its file

    kept = execute_batch(instance=instance)
    assert kept.success and kept.summary.stale.names == ("msft", "nvda") and kept.summary.stale.rows == 6
    assert stack.query("SELECT count(*) FROM {t}") == [(9,)]  # the default never deletes data
    assert "In the table, no longer listed: 2 companies, 6 rows (msft, nvda)" in message(instance, kept.run_id)

    pruned = execute_batch(instance=instance, prune_unlisted=True)
    assert pruned.success and pruned.summary.commit is not None
    assert pruned.summary.commit.pruned == ("msft", "nvda") and pruned.summary.commit.rows_deleted == 6
    assert pruned.summary.stale.names == ()
    assert stack.query("SELECT DISTINCT company_name FROM {t}") == [("aapl",)]
    assert stack.query('SELECT company_name FROM {s}."historical_stocks_data_loads"') == [("aapl",)]
    assert stack.keys("Processed/") == ["Processed/company=aapl/prices.parquet"]
    assert [r[8] for r in extract_rows(stack)] == ["aapl"] * 3  # the extract follows the table


def test_a_failed_run_after_a_commit_calls_the_old_extract_stale(stack, instance, monkeypatch) -> None:
    put_list(stack, "aapl.us.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(3))
    assert execute_batch(instance=instance).success
    stack.put("Stocks/aapl.us.txt", HEADER + rows(4))
    failed, _ = run_with_extract_uploads_failing(stack, instance, monkeypatch)
    assert not failed.success and failed.summary is not None
    assert failed.summary.extract is not None and failed.summary.table is not None
    assert failed.summary.extract.version == failed.summary.table.version - 1
    assert "(STALE (older than the table; the next run rewrites it))" in message(instance, failed.run_id)


def test_schema_drift_fails_the_run_before_any_write_and_names_each_difference(stack, instance) -> None:
    put_list(stack, "aapl.us.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(3))
    assert execute_batch(instance=instance).success
    with stack.connect() as conn:
        conn.execute(f'ALTER TABLE "{stack.schema}"."{stack.table}" ALTER COLUMN close_value TYPE numeric(6,1)')
    before, extract = stack.table_rows(), stack.get("Output/historical_stock_data.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(3, close=10.55))
    failed = execute_batch(instance=instance)
    assert not failed.success
    assert "column close_value: expected double precision, found numeric(6,1)" in (failed.error or "")
    assert stack.table_rows() == before and stack.get("Output/historical_stock_data.csv") == extract
    assert stack.keys("Rejected/") == [] and failed.summary is not None and failed.summary.commit is None
    assert "expected double precision, found numeric(6,1)" in message(instance, failed.run_id)


def test_a_legacy_table_is_refused_with_the_migration_command(stack, instance) -> None:
    columns = ", ".join(
        f"{c} VARCHAR(56)"
        for c in (
            "stock_date",
            "open_value",
            "high_value",
            "low_value",
            "close_value",
            "volume_traded",
            "daily_percent_change",
            "value_change",
            "company_name",
        )
    )
    with stack.connect() as conn:
        conn.execute(f'CREATE TABLE "{stack.schema}"."{stack.table}" ({columns})')
        conn.execute(f"""INSERT INTO "{stack.schema}"."{stack.table}" VALUES
            ('2017-11-10', '1', '2', '0.5', '1.5', '10', '50', '0.5', 'AAPL')""")
    put_list(stack, "aapl.us.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(3))
    failed = execute_batch(instance=instance)
    assert not failed.success and "stock-platform migrate-legacy" in (failed.error or "")
    assert stack.query("SELECT company_name FROM {t}") == [("AAPL",)]  # untouched until the user migrates


def test_a_recreated_table_does_not_take_an_old_extract_with_the_same_version_number_for_current(stack, instance):
    put_list(stack, "aapl.us.csv")
    stack.put("Stocks/aapl.us.txt", HEADER + rows(3))
    assert execute_batch(instance=instance).success  # table version 1, extract at version 1
    # The table is recreated (a new database, a restore into a fresh schema): its version starts at 1 again.
    with stack.connect() as conn:
        conn.execute(f'DROP SCHEMA "{stack.schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{stack.schema}"')
    stack.put("Stocks/aapl.us.txt", HEADER + rows(2, close=13.5))
    result = execute_batch(instance=instance)
    assert result.success and result.summary is not None and result.summary.table is not None
    assert result.summary.table.version == 1 and result.summary.extract is not None
    assert result.summary.extract.regenerated  # not "already current": it was another table's version 1
    assert [row[4] for row in extract_rows(stack)] == ["13.5", "13.5"]
