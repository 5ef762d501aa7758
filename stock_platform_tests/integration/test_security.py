"""Hostile names cannot escape their prefix or reach SQL; secrets never reach logs, metadata or messages."""

from urllib.parse import quote

import pytest

from stock_platform.local.report import execute_batch
from stock_platform.notifications.messages import format_notification
from stock_platform.notifications.sensors import run_facts

pytestmark = pytest.mark.integration
GOOD = b"Date,Open,High,Low,Close,Volume,OpenInt\n2017-11-10,10,11,9,10.5,100,0\n"
HOSTILE = [
    "Stocks/../escape.us.txt",
    "Stocks/sub/../nested.us.txt",
    "Stocks/a b.us.txt",
    "Stocks/x';DROP TABLE historical_stocks_data;--.us.txt",
    "Stocks/\u0430apl.us.txt",  # Cyrillic a: a homoglyph of aapl
    "Stocks/tab\there.us.txt",
]


def test_hostile_keys_and_entries_are_reported_and_never_loaded(stack, instance) -> None:
    entries = [k.split("/")[-1] for k in HOSTILE] + ["aapl", "../../Output/historical_stock_data", "x';--"]
    stack.put("CompanyNames/top_companies.txt", "\n".join(entries).encode())
    stack.put("Stocks/aapl.us.txt", GOOD)
    for key in HOSTILE:
        stack.put(key, GOOD)
    outcome = execute_batch(instance=instance)
    assert outcome.success, outcome.error
    assert stack.query("SELECT DISTINCT company_name FROM {t}") == [("aapl",)]
    assert stack.query(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'historical_stocks_data' AND schemaname = %s", (stack.schema,)
    ) == [(1,)]
    # Everything the platform wrote stays under its own prefixes.
    written = [k for k in stack.keys("") if not k.startswith(("Stocks/", "CompanyNames/"))]
    assert all(k.startswith(("Output/", "Processed/company=aapl/", "Rejected/")) for k in written), written
    top = instance.fetch_materializations(__import__("dagster").AssetKey("top_companies"), limit=1).records[0]
    invalid = top.asset_materialization.metadata["files_with_invalid_names"].value
    assert {
        "a b.us.txt",
        "x';DROP TABLE historical_stocks_data;--.us.txt",
        "\u0430apl.us.txt",
        "tab\there.us.txt",
    } <= set(invalid)


def everything_recorded(instance, run_id: str) -> str:
    """Every event message and its data, as stored in the event database."""
    return "\n".join(
        f"{entry.message} {entry.dagster_event and entry.dagster_event.event_specific_data!r}"
        for entry in (r.event_log_entry for r in instance.get_records_for_run(run_id).records)
    )


@pytest.mark.parametrize(
    ("password", "fragments"),
    [
        ("s3cr3t-Pa55word", ["s3cr3t-Pa55word"]),
        ("Pg@S3cr3t:/%# x", ["S3cr3t", "Pg%40S3cr3t"]),  # every character that needs escaping, escaped
    ],
)
def test_the_database_password_never_leaves_the_process(stack, instance, monkeypatch, password, fragments) -> None:
    encoded = quote(password, safe="")
    monkeypatch.setenv(
        "STOCK_PLATFORM_DATABASE_URL", f"postgresql://loader:{encoded}@127.0.0.1:1/stocks?connect_timeout=2"
    )
    stack.put("CompanyNames/top_companies.txt", b"aapl")
    stack.put("Stocks/aapl.us.txt", GOOD)
    outcome = execute_batch(instance=instance)
    assert not outcome.success and "127.0.0.1" in outcome.error and "loader:***@" in outcome.error
    run = instance.get_run_by_id(outcome.run_id)
    message = format_notification(run_facts(instance, run, None), "P")
    for text in (
        outcome.error,
        everything_recorded(instance, outcome.run_id),
        message.body,
        repr(run.run_config),
        repr(run.tags),
    ):
        for fragment in (password, encoded, *fragments):
            assert fragment not in text


def test_a_url_with_an_unescaped_password_fails_without_echoing_it(stack, instance, monkeypatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_DATABASE_URL", "postgresql+psycopg://loader:Pg@S3cr3t@127.0.0.1/db")
    stack.put("CompanyNames/top_companies.txt", b"aapl")
    stack.put("Stocks/aapl.us.txt", GOOD)
    outcome = execute_batch(instance=instance)
    assert not outcome.success and "does not parse cleanly" in outcome.error and "%40" in outcome.error
    run = instance.get_run_by_id(outcome.run_id)
    body = format_notification(run_facts(instance, run, None), "P").body
    for text in (outcome.error, everything_recorded(instance, outcome.run_id), body):
        assert "S3cr3t" not in text and "Pg@" not in text
