"""The daily download end to end on moto's S3 and the local fake provider: raw objects, merged Stocks/ files, one
marker; a re-run changes nothing; a corrected value replaces the old one and is counted; concurrent writers lose no
update; S3's 409 is retried; a date range is one run."""

import json
import threading
from datetime import date

import boto3
import dagster as dg
import pytest

from stock_platform.definitions import defs
from stock_platform.downloads.assets import DAILY_DOWNLOAD_JOB
from stock_platform.downloads.checks import TICKERS_AVAILABLE
from stock_platform.downloads.keys import DAILY_STOCK_PRICES
from stock_platform.downloads.landing import Landing
from stock_platform.downloads.prices import PriceRow
from stock_platform.local.fake_provider import start_fake_provider
from stock_platform.notifications.messages import REPORT_METADATA_KEY
from stock_platform.tags import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from stock_platform_tests.faults import FlakyProxy

pytestmark = pytest.mark.integration

DAY = "2026-01-09"  # a Friday
WEEK = ("2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09")
GOOD = ("aapl", "msft", "ge")
BAD = {"bhtml": "html", "bquota": "quota", "bnodata": "nodata"}


@pytest.fixture
def fake(monkeypatch):
    provider = start_fake_provider(bad={**BAD, "bnull": "null", "bthrottle": "throttle"}, last_day=date(2026, 1, 9))
    monkeypatch.setenv("STOCK_PLATFORM_PRICE_PROVIDER", "yahoo")
    monkeypatch.setenv("STOCK_PLATFORM_PRICE_BASE_URL", provider.base_url)
    monkeypatch.setenv("STOCK_PLATFORM_PRICE_REQUESTS_PER_SECOND", "200")
    monkeypatch.setenv("STOCK_PLATFORM_DOWNLOAD_SCHEDULE_ENABLED", "false")
    yield provider
    provider.stop()


def download(instance, days=(DAY,), tickers=GOOD, force=False, raise_on_error=True):
    job = defs().resolve_job_def(DAILY_DOWNLOAD_JOB)
    config = {"ops": {"daily_stock_prices": {"config": {"force": force, "tickers": list(tickers)}}}}
    kwargs = (
        {"partition_key": days[0]}
        if len(days) == 1
        else {"tags": {PARTITION_RANGE_START_TAG: days[0], PARTITION_RANGE_END_TAG: days[-1]}}
    )
    return job.execute_in_process(instance=instance, run_config=config, raise_on_error=raise_on_error, **kwargs)


def materialization(result) -> dict:
    events = result.asset_materializations_for_node("daily_stock_prices")
    return {k: v.value for k, v in events[0].metadata.items()}


def markers(stack) -> list[str]:
    return [k for k in stack.keys(prefix="") if k.endswith(".SUCCESS")]


def test_a_day_lands_raw_objects_merged_files_and_one_marker(stack, fake, instance) -> None:
    stack.put("Stocks/aapl.us.txt", b"Date,Open,High,Low,Close,Volume,OpenInt\n2026-01-02,1.0,1.0,1.0,1.0,10,0\n")
    result = download(instance, tickers=(*GOOD, *BAD, "bnull"))
    assert result.success
    meta = materialization(result)
    assert meta["tickers_downloaded"] == 3 and meta["tickers_unavailable"] == 3 and meta["tickers_rejected"] == 1
    assert meta["rows_new"] == 3 and meta["rows_corrected"] == 0

    raw = sorted(k for k in stack.keys("raw/"))
    assert raw == [f"raw/{DAY}/{t}.us.txt" for t in sorted(GOOD)]
    expected = {r[0]: r for r in fake.state.rows("aapl", date(2026, 1, 9), date(2026, 1, 9))}[DAY]
    aapl = stack.get("Stocks/aapl.us.txt").decode().splitlines()
    assert aapl[1] == "2026-01-02,1.0,1.0,1.0,1.0,10,0"  # the existing line keeps its text
    assert aapl[2] == f"{DAY},{expected[1]},{expected[2]},{expected[3]},{expected[4]},{expected[5]},0"
    assert stack.get("Stocks/msft.us.txt").decode().startswith("Date,Open,High,Low,Close,Volume,OpenInt\n")
    assert not any(
        k.startswith(("Stocks/bhtml", "Stocks/bnull", "raw/" + DAY + "/bquota")) for k in stack.keys(prefix="")
    )

    [marker] = markers(stack)
    assert json.loads(stack.get(marker))["changed_companies"] == sorted(GOOD)
    report = meta[REPORT_METADATA_KEY]
    assert "bhtml: unavailable: an HTML page" in report and "bquota: unavailable: rate limited" in report
    assert "bnull: rejected: all 1 rows rejected" in report and "Downloaded 3 (rows new 3, corrected 0)" in report
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == TICKERS_AVAILABLE and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN


def test_rerun_is_a_no_op_and_a_corrected_value_is_counted(stack, fake, instance) -> None:
    assert download(instance).success
    before = {k: stack.get(k) for k in stack.keys(prefix="")}

    again = download(instance)
    meta = materialization(again)
    assert meta["tickers_unchanged"] == 3 and meta["rows_new"] == 0 and meta["raw_objects_written"] == 0
    assert {k: stack.get(k) for k in stack.keys(prefix="")} == before  # not one object written: no new marker either
    assert "no marker written" in meta[REPORT_METADATA_KEY]

    fake.state.set_close("msft", DAY, 123.4567)
    corrected = materialization(download(instance))
    assert corrected["rows_corrected"] == 1 and corrected["tickers_downloaded"] == 1
    assert (
        f"{DAY}," in stack.get("Stocks/msft.us.txt").decode()
        and ",123.4567," in stack.get("Stocks/msft.us.txt").decode()
    )
    assert stack.get(f"raw/{DAY}/msft.us.txt") == before[f"raw/{DAY}/msft.us.txt"]  # first write wins
    assert len(markers(stack)) == 2

    forced = materialization(download(instance, tickers=("msft",), force=True))
    assert forced["raw_objects_written"] == 1 and b",123.4567," in stack.get(f"raw/{DAY}/msft.us.txt")


def test_a_week_is_one_run_with_one_request_per_ticker(stack, fake, instance) -> None:
    result = download(instance, days=WEEK)
    assert result.success
    assert len(instance.get_runs()) == 1
    assert {t: fake.state.requests[t] for t in GOOD} == dict.fromkeys(GOOD, 1)
    meta = materialization(result)
    assert meta["rows_new"] == 15 and sorted(k for k in stack.keys("raw/")) == sorted(
        f"raw/{d}/{t}.us.txt" for d in WEEK for t in GOOD
    )
    assert len(stack.get("Stocks/ge.us.txt").decode().splitlines()) == 1 + len(WEEK)
    materialized = instance.get_materialized_partitions(DAILY_STOCK_PRICES)
    assert materialized == set(WEEK)


def test_every_ticker_failing_fails_the_run_with_the_report(stack, fake, instance) -> None:
    result = download(instance, tickers=tuple(BAD), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert "No ticker of 3 got prices" in failure.error.message
    assert "bhtml: unavailable" in failure.user_failure_data.metadata[REPORT_METADATA_KEY].value
    assert not stack.keys(prefix="")


def test_a_ticker_failing_for_days_turns_the_check_to_error(stack, fake, instance, monkeypatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_DOWNLOAD_ERROR_AFTER_DAYS", "3")
    severities = []
    for day in WEEK[:3]:
        result = download(instance, days=(day,), tickers=("aapl", "bhtml"))
        [check] = result.get_asset_check_evaluations()
        severities.append((check.severity, check.metadata["longest_streak_days"].value))
    assert severities == [
        (dg.AssetCheckSeverity.WARN, 1),
        (dg.AssetCheckSeverity.WARN, 2),
        (dg.AssetCheckSeverity.ERROR, 3),
    ]


def rows_for(day: str, close: float) -> list[PriceRow]:
    return [PriceRow(day, close, close, close, close, 100)]


def test_concurrent_writers_lose_no_update(stack) -> None:
    days = [f"2026-02-{d:02d}" for d in range(2, 26)]
    # Every writer's first read waits for all of them: they all merge into the same (missing) file, so one write
    # wins and the others must be refused and retried, however the machine schedules the threads.
    first_reads = threading.Barrier(len(days))
    seen = threading.local()
    client = boto3.client("s3", endpoint_url=stack.endpoint)

    class ReadsTogether:
        def get_object(self, **kwargs: object) -> object:
            try:
                return client.get_object(**kwargs)
            finally:  # after the read (also a NoSuchKey): no writer writes before every writer has read
                if not getattr(seen, "read", False):
                    seen.read = True
                    first_reads.wait()

        def __getattr__(self, name: str) -> object:
            return getattr(client, name)

    landing = Landing(ReadsTogether(), stack.bucket)
    attempts = []

    def write(day: str) -> None:
        attempts.append(landing.update_stock_file("race.us.txt", rows_for(day, 10.0)).attempts)

    threads = [threading.Thread(target=write, args=(d,)) for d in days]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = stack.get("Stocks/race.us.txt").decode().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == days
    assert sorted(attempts)[1] > 1, sorted(attempts)  # the writers did collide: all but the first were refused


def test_s3_conflict_409_is_retried(stack) -> None:
    stack.put("Stocks/conf.us.txt", b"Date,Open,High,Low,Close,Volume,OpenInt\n")
    injected = {"n": 0}

    def fault(method: str, path: str, n: int) -> int | None:
        if method == "PUT" and "conf.us.txt" in path and injected["n"] < 2:
            injected["n"] += 1
            return 409
        return None

    with FlakyProxy(stack.endpoint, fault) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.url, config=boto3.session.Config(retries={"max_attempts": 1}))
        update = Landing(client, stack.bucket).update_stock_file("conf.us.txt", rows_for("2026-01-05", 5.0))
    assert injected["n"] == 2 and update.attempts == 3
    assert stack.get("Stocks/conf.us.txt").decode().splitlines()[1].startswith("2026-01-05,5.0,")


def test_a_new_ticker_is_written_without_a_read_and_merged_if_another_writer_created_it(stack) -> None:
    landing = Landing(boto3.client("s3", endpoint_url=stack.endpoint), stack.bucket)
    fresh = landing.update_stock_file("new.us.txt", rows_for("2026-03-02", 7.0), listed=False)
    assert fresh.attempts == 1 and stack.get("Stocks/new.us.txt").decode().splitlines()[1].startswith("2026-03-02,")

    # Not in this run's listing, but created since (another downloader): IfNoneMatch fails, the retry reads and merges.
    raced = landing.update_stock_file("new.us.txt", rows_for("2026-03-03", 8.0), listed=False)
    assert raced.attempts == 2
    dates = [line.split(",")[0] for line in stack.get("Stocks/new.us.txt").decode().splitlines()[1:]]
    assert dates == ["2026-03-02", "2026-03-03"]


def test_configured_tickers_are_companies_as_the_list_names_them(stack, fake, instance) -> None:
    # `AAPL` in the run's config is company `aapl`: its existing file gains the day, no second `AAPL.us.txt` appears
    # (the batch would then refuse both as ambiguous).
    stack.put("Stocks/aapl.us.txt", b"Date,Open,High,Low,Close,Volume,OpenInt\n2026-01-02,1.0,1.0,1.0,1.0,10,0\n")
    result = download(instance, tickers=("AAPL", "Msft"))
    assert result.success and materialization(result)["tickers_downloaded"] == 2
    assert sorted(stack.keys("Stocks/")) == ["Stocks/aapl.us.txt", "Stocks/msft.us.txt"]
    assert stack.get("Stocks/aapl.us.txt").decode().splitlines()[2].startswith(f"{DAY},")
