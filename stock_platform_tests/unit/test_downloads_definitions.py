"""The download domain's definitions, partitions, schedule, settings, check and report (no AWS, no HTTP)."""

import importlib
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from stock_platform.downloads import checks, lambda_handler
from stock_platform.downloads.assets import DAILY_DOWNLOAD_JOB, DAILY_DOWNLOAD_SCHEDULE, trading_day_partitions
from stock_platform.downloads.definitions import build_download_defs
from stock_platform.downloads.keys import DAILY_STOCK_PRICES
from stock_platform.downloads.providers import Provider
from stock_platform.downloads.report import per_day, report_lines
from stock_platform.downloads.run import DownloadResult, TickerOutcome, TickerStatus, watchlist
from stock_platform.downloads.settings import DownloadSettings, parse_tickers, price_client_from_environment
from stock_platform.local.stack import PROJECT_ROOT
from stock_platform.resources.s3 import MonitoredBucket, SourceBucket
from stock_platform.settings import Settings

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def defs(monkeypatch) -> dg.Definitions:
    monkeypatch.setenv("STOCK_PLATFORM_PRICE_API_KEY", "secret")
    monkeypatch.setenv("STOCK_PLATFORM_DOWNLOAD_LAMBDA_FUNCTION", "downloader")
    # The shared resources come from the platform's definitions; these stand in for them.
    shared = dg.Definitions(resources={"bucket": SourceBucket(bucket="b"), "monitored": MonitoredBucket(bucket="b")})
    return dg.Definitions.merge(build_download_defs(Settings.from_environment()), shared)


def test_the_domain_defines_its_asset_check_job_schedule_and_resources(defs) -> None:
    dg.Definitions.validate_loadable(defs)
    assert [a.key for a in defs.assets] == [DAILY_STOCK_PRICES]
    [asset] = defs.assets
    assert [spec.name for spec in asset.check_specs] == [checks.TICKERS_AVAILABLE]
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert defs.resolve_job_def(DAILY_DOWNLOAD_JOB).name == DAILY_DOWNLOAD_JOB
    schedule = defs.resolve_schedule_def(DAILY_DOWNLOAD_SCHEDULE)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 18 * * 1-5", "America/New_York")
    # The key is bound to its variable, never read into the definitions.
    source = defs.resources["price_source"]
    assert source.api_key == dg.EnvVar("STOCK_PLATFORM_PRICE_API_KEY")
    assert defs.resources["download_lambda"].function_name == dg.EnvVar("STOCK_PLATFORM_DOWNLOAD_LAMBDA_FUNCTION")


def test_partitions_are_trading_days_in_new_york() -> None:
    partitions = trading_day_partitions(
        DownloadSettings.from_environment({"STOCK_PLATFORM_DOWNLOAD_START_DATE": "2026-01-01"})
    )
    keys = partitions.get_partition_keys(current_time=datetime(2026, 1, 12, 12, tzinfo=NEW_YORK))
    # Thursday 1 Jan (New Year's Day: closed) to Monday 12 Jan (today's partition exists during the day): no
    # holiday, no Saturday or Sunday.
    assert keys == [
        "2026-01-02",
        "2026-01-05",
        "2026-01-06",
        "2026-01-07",
        "2026-01-08",
        "2026-01-09",
        "2026-01-12",
    ]


def test_a_week_with_a_holiday_and_a_configured_closure_has_their_partitions_left_out() -> None:
    settings = DownloadSettings.from_environment(
        {"STOCK_PLATFORM_DOWNLOAD_START_DATE": "2026-11-01", "STOCK_PLATFORM_MARKET_CLOSED_DAYS": "2026-11-24"}
    )
    keys = trading_day_partitions(settings).get_partition_keys(current_time=datetime(2026, 11, 30, 12, tzinfo=NEW_YORK))
    assert [k for k in keys if k >= "2026-11-23"] == ["2026-11-23", "2026-11-25", "2026-11-27", "2026-11-30"]


@pytest.mark.parametrize(
    ("when", "expected", "skipped_because"),
    [
        (datetime(2026, 1, 9, 18, 30, tzinfo=NEW_YORK), "2026-01-09", None),  # Friday: Friday's session
        (datetime(2026, 1, 12, 18, 30, tzinfo=NEW_YORK), "2026-01-12", None),
        (datetime(2026, 1, 10, 18, 30, tzinfo=NEW_YORK), None, "weekend"),  # Saturday (a custom cron might tick)
        (datetime(2026, 11, 26, 18, 30, tzinfo=NEW_YORK), None, "Thanksgiving Day"),  # no prices to download
    ],
)
def test_the_schedule_downloads_the_session_that_just_closed(defs, instance, when, expected, skipped_because) -> None:
    schedule = defs.resolve_schedule_def(DAILY_DOWNLOAD_SCHEDULE)
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    result = schedule.evaluate_tick(context)
    if expected is None:
        assert not result.run_requests and skipped_because in (result.skip_message or "")
    else:
        [request] = result.run_requests or []
        assert (request.partition_key, request.run_key) == (expected, expected)


def test_settings_read_the_environment_with_documented_defaults() -> None:
    default = DownloadSettings.from_environment({})
    assert (default.tickers, default.schedule_cron, default.timezone, default.error_after_days) == (
        None,
        "30 18 * * 1-5",
        "America/New_York",
        3,
    )
    custom = DownloadSettings.from_environment(
        {"STOCK_PLATFORM_DOWNLOAD_TICKERS": "AAPL, msft ge", "STOCK_PLATFORM_DOWNLOAD_SCHEDULE_ENABLED": "no"}
    )
    assert custom.tickers == ("aapl", "msft", "ge") and custom.schedule_status == dg.DefaultScheduleStatus.STOPPED
    assert parse_tickers(" , ") is None


def test_the_watchlist_defaults_to_the_batch_s_company_list() -> None:
    listed = watchlist(None, lambda: (b"'AAPL.us.csv', 'msft.us.txt',\n\"ge\", 'aapl'", "s3://b/list"))
    assert listed == ("aapl", "msft", "ge")
    assert watchlist(["IBM"], lambda: pytest.fail("the list is not read when tickers are configured")) == ("ibm",)


def outcome(ticker: str, status: TickerStatus, **kwargs) -> TickerOutcome:
    return TickerOutcome(ticker, status, **kwargs)


RESULT = DownloadResult(
    days=("2026-01-08", "2026-01-09"),
    run_id="r1",
    outcomes=(
        outcome(
            "aapl",
            TickerStatus.DOWNLOADED,
            dates=("2026-01-08", "2026-01-09"),
            new_dates=("2026-01-09",),
            corrected_dates=("2026-01-08",),
        ),
        outcome("msft", TickerStatus.UNCHANGED, dates=("2026-01-08", "2026-01-09"), rows_rejected=1),
        outcome("zz", TickerStatus.UNAVAILABLE, reason="quota exceeded"),
    ),
    marker_key="downloads/x.SUCCESS",
    requests=3,
)


def test_the_report_tells_each_count_from_the_result() -> None:
    lines = report_lines(RESULT, "yahoo", "s3://b/downloads/x.SUCCESS")
    assert (
        lines[0]
        == "Daily price download of 2026-01-08 to 2026-01-09 (2 trading days) from yahoo: 3 tickers, 3 requests."
    )
    assert lines[1].startswith("Downloaded 1 (rows new 1, corrected 1), unchanged 1, unavailable 1, rejected 0")
    assert "  zz: unavailable: quota exceeded" in lines and "Rows rejected: msft 1" in lines
    assert [(d.day, d.tickers_with_prices, d.rows_new, d.rows_corrected) for d in per_day(RESULT)] == [
        ("2026-01-08", 2, 0, 1),
        ("2026-01-09", 2, 1, 0),
    ]
    assert DownloadResult.from_json(RESULT.to_json()) == RESULT


@pytest.mark.parametrize(
    ("history", "streak", "severity"),
    [
        ({}, 2, dg.AssetCheckSeverity.WARN),
        ({"2026-01-07": {"zz"}}, 3, dg.AssetCheckSeverity.ERROR),
        ({"2026-01-07": {"other"}, "2026-01-06": {"zz"}}, 2, dg.AssetCheckSeverity.WARN),  # the streak broke
    ],
)
def test_a_failing_ticker_s_streak_sets_the_check_s_severity(history, streak, severity) -> None:
    days = checks.streaks(RESULT, ["2026-01-06", "2026-01-07"], history)
    assert days == {"zz": streak}
    result = checks.tickers_available_result(RESULT, days, error_after_days=3)
    assert not result.passed and result.severity == severity
    assert result.metadata["evidence"].value == [{"ticker": "zz", "days_failing": streak, "reason": "quota exceeded"}]


def test_the_lambda_image_runs_the_handler_that_exists() -> None:
    dockerfile = (PROJECT_ROOT / "deploy" / "lambda" / "Dockerfile").read_text()
    [cmd] = [json.loads(line.split(" ", 1)[1]) for line in dockerfile.splitlines() if line.startswith("CMD ")]
    module, _, name = cmd[0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_the_lambda_s_client_and_the_resource_read_the_same_variables_and_defaults(monkeypatch) -> None:
    env = {
        "STOCK_PLATFORM_PRICE_PROVIDER": " Stooq ",
        "STOCK_PLATFORM_PRICE_BASE_URL": "http://127.0.0.1:9",
        "STOCK_PLATFORM_PRICE_API_KEY": "k",
        "STOCK_PLATFORM_PRICE_REQUESTS_PER_SECOND": "200",
        "STOCK_PLATFORM_PRICE_MAX_ATTEMPTS": "2",
        "STOCK_PLATFORM_PRICE_TIMEOUT_SECONDS": "",  # set but empty: the default
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with dg.build_resources({"price_source": DownloadSettings.from_environment().price_source()}) as resources:
        from_resource = resources.price_source.client()
    from_env = price_client_from_environment(env)
    fields = ("provider", "base_url", "api_key", "requests_per_second", "max_attempts", "timeout_seconds")
    assert [getattr(from_env, f) for f in fields] == [getattr(from_resource, f) for f in fields]
    assert [getattr(from_env, f) for f in fields] == [Provider.STOOQ, "http://127.0.0.1:9", "k", 200.0, 2, 20.0]
    defaults = price_client_from_environment({})
    assert (defaults.provider, defaults.requests_per_second, defaults.max_attempts) == (Provider.YAHOO, 2.0, 4)
    with pytest.raises(ValueError, match="Unknown price provider"):
        price_client_from_environment({"STOCK_PLATFORM_PRICE_PROVIDER": "nasdaq"})


def test_the_scheduled_lambda_downloads_nothing_on_a_holiday(monkeypatch) -> None:
    # An EventBridge schedule invokes the function with no days: it downloads today, unless the exchange is closed.
    def fail(*args: object) -> None:
        pytest.fail("a closed day asks the provider nothing")

    monkeypatch.setattr(lambda_handler, "download_from_event", fail)
    thanksgiving = datetime(2026, 11, 26, 18, 30, tzinfo=NEW_YORK)
    answer = lambda_handler.handler({}, None, now=thanksgiving)
    assert answer == {"skipped": "2026-11-26: the exchange is closed (Thanksgiving Day): nothing to download"}
    # Days named in the event are downloaded as asked, closed or not.
    monkeypatch.setattr(lambda_handler, "download_from_event", lambda event: DownloadResult(("2026-11-26",), "r", ()))
    assert lambda_handler.handler({"days": ["2026-11-26"]}, None, now=thanksgiving)["days"] == ("2026-11-26",)
