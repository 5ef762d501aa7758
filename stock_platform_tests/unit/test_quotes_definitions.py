"""The quotes domain's definitions: what exists under which settings, and the polling schedule's ticks."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from stock_platform.quotes.definitions import build_quote_defs
from stock_platform.quotes.keys import PRICE_MOVE_ALERTS, QUOTE_LAKE, QUOTE_LAKE_PARTS, QUOTE_MONTH_LOG, STOCK_QUOTES
from stock_platform.settings import Settings

NY = ZoneInfo("America/New_York")


class StubPriceSource(dg.ConfigurableResource):
    def fetch_latest(self, ticker: str) -> object:
        raise NotImplementedError


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STOCK_PLATFORM_QUOTES_STREAM", "STOCK_PLATFORM_SNS_TOPIC_ARN", "STOCK_PLATFORM_ALERTS_TOPIC_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOCK_PLATFORM_SOURCE_BUCKET", "bucket")
    monkeypatch.setenv("STOCK_PLATFORM_DATABASE_URL", "postgresql://user@localhost/db")


def platform() -> dg.Definitions:
    settings = Settings.from_environment()
    defs = dg.Definitions.merge(
        build_quote_defs(settings),
        dg.Definitions(resources={**settings.resources(), "price_source": StubPriceSource()}),
    )
    dg.Definitions.validate_loadable(defs)
    return defs


def test_the_assets_jobs_and_schedules_without_a_stream() -> None:
    defs = platform()
    repo = defs.get_repository_def()
    assert set(repo.asset_graph.get_all_asset_keys()) >= {
        QUOTE_MONTH_LOG,
        QUOTE_LAKE_PARTS,
        PRICE_MOVE_ALERTS,
        QUOTE_LAKE,
    }
    assert STOCK_QUOTES not in repo.asset_graph.get_all_asset_keys()
    assert {"quote_ingest_job", "quote_lake_compaction_job"} <= {j.name for j in repo.get_all_jobs()}
    assert {s.name for s in repo.schedule_defs} == {"quote_polling_schedule", "quote_lake_compaction_schedule"}
    assert repo.sensor_defs == [] and "quote_alerts" not in defs.resources
    # Polling is off by default: the watchlist can be hundreds of tickers against a rate-limited source.
    assert repo.get_schedule_def("quote_polling_schedule").default_status == dg.DefaultScheduleStatus.STOPPED
    checks = {k.name for k in repo.asset_graph.asset_check_keys}
    assert {"quote_month_log_has_unique_keys", "quote_month_log_is_in_time_order"} <= checks


def test_stream_alerts_landing_and_polling_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_QUOTES_STREAM", "quotes")
    monkeypatch.setenv("STOCK_PLATFORM_ALERTS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:alerts")
    monkeypatch.setenv("STOCK_PLATFORM_QUOTES_TO_POSTGRES", "true")
    monkeypatch.setenv("STOCK_PLATFORM_QUOTES_POLLING", "true")
    defs = platform()
    repo = defs.get_repository_def()
    assert [s.name for s in repo.sensor_defs] == ["quote_stream_sensor"]
    assert STOCK_QUOTES in repo.asset_graph.get_all_asset_keys()
    assert defs.resources["quote_alerts"].topic_arn.env_var_name == "STOCK_PLATFORM_ALERTS_TOPIC_ARN"
    assert repo.get_schedule_def("quote_polling_schedule").default_status == dg.DefaultScheduleStatus.RUNNING


def test_alerts_fall_back_to_the_pipeline_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:pipeline")
    assert platform().resources["quote_alerts"].topic_arn.env_var_name == "STOCK_PLATFORM_SNS_TOPIC_ARN"


@pytest.mark.parametrize(
    ("local", "runs"),
    [
        (datetime(2024, 3, 4, 9, 25), False),  # Monday, before the open
        (datetime(2024, 3, 4, 9, 30), True),
        (datetime(2024, 3, 4, 16, 0), True),  # the close is polled
        (datetime(2024, 3, 4, 16, 5), False),
        (datetime(2024, 3, 9, 12, 0), False),  # Saturday
        (datetime(2026, 11, 26, 12, 0), False),  # Thanksgiving Day: the exchange is closed
    ],
)
def test_the_polling_schedule_runs_in_market_hours_only(local: datetime, runs: bool) -> None:
    repo = platform().get_repository_def()
    schedule = repo.get_schedule_def("quote_polling_schedule")
    assert schedule.cron_schedule == "*/5 9-16 * * 1-5" and schedule.execution_timezone == "America/New_York"
    context = dg.build_schedule_context(scheduled_execution_time=local.replace(tzinfo=NY), repository_def=repo)
    result = schedule.evaluate_tick(context)
    if runs:
        (request,) = result.run_requests or []
        assert request.partition_key == "202403"
        assert request.run_config["ops"]["ingest_quotes"]["config"]["poll"] is True
    else:
        assert not result.run_requests and "outside market hours" in (result.skip_message or "")


def test_the_polling_schedule_skips_a_configured_closure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_MARKET_CLOSED_DAYS", "2026-03-10")
    repo = platform().get_repository_def()
    schedule = repo.get_schedule_def("quote_polling_schedule")
    for day, runs in ((10, False), (11, True)):
        when = datetime(2026, 3, day, 12, 0, tzinfo=NY)
        result = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when, repository_def=repo))
        assert bool(result.run_requests) is runs, (day, result.skip_message)


def test_a_bad_time_zone_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_EXCHANGE_TIMEZONE", "Mars/Olympus")
    with pytest.raises(Exception, match="Mars/Olympus"):
        platform()
