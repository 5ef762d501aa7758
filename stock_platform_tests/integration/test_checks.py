"""Asset checks as a user sees them: evaluations with evidence, and a corrupt batch that does not load."""

import dagster as dg
import pytest

from stock_platform.batch.keys import HISTORICAL_STOCKS_DATA
from stock_platform.batch.summary import CompanyStatus
from stock_platform.definitions import defs
from stock_platform.local.report import execute_batch
from stock_platform.notifications.messages import format_notification
from stock_platform.notifications.sensors import run_facts

pytestmark = pytest.mark.integration
HEADER = b"Date,Open,High,Low,Close,Volume,OpenInt\n"


def checks_of_run(instance: dg.DagsterInstance, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return {e.check_name: e for e in evaluations}


def put_batch(stack, files: dict[str, bytes]) -> None:
    stack.put("CompanyNames/top_companies.txt", ", ".join(f"'{n}'" for n in files).encode() + b", 'ghost.us.csv'")
    for name, body in files.items():
        stack.put(f"Stocks/{name}", HEADER + body)


def test_checks_pass_and_warn_with_evidence(stack, instance) -> None:
    put_batch(
        stack,
        {
            "good.us.txt": b"2017-11-10,10,11,9,10.5,100,0\n2017-11-13,10,11,9,10.5,100,0\n",
            "odd.us.txt": b"2017-11-10,10,9,11,10.5,100,0\n2099-01-01,10,11,9,10.5,100,0\n",  # low > high; future date
        },
    )
    outcome = execute_batch(instance=instance)
    assert outcome.success
    checks = checks_of_run(instance, outcome.run_id)
    assert checks["has_unique_keys"].passed and checks["rows_match_loaded_frames"].passed
    assert checks["has_non_negative_volume"].passed and checks["rejected_share_below_threshold"].passed
    ohlc = checks["has_consistent_ohlc"]
    assert not ohlc.passed and ohlc.severity == dg.AssetCheckSeverity.WARN
    assert ohlc.metadata["offending_rows"].value == 1 and ohlc.metadata["examples"].value == ["odd 2017-11-10"]
    dates = checks["has_plausible_dates"]
    assert not dates.passed and dates.severity == dg.AssetCheckSeverity.ERROR
    assert dates.metadata["examples"].value == ["odd 2099-01-01"]
    listed = checks["every_listed_company_has_a_file"]
    assert not listed.passed and listed.metadata["examples"].value == ["ghost.us.csv"]
    # The run's message names the failed checks.
    body = format_notification(run_facts(instance, instance.get_run_by_id(outcome.run_id), None), "P").body
    assert "historical_stocks_data:has_consistent_ohlc" in body and "historical_stocks_data:has_plausible_dates" in body


def test_a_batch_over_the_rejected_share_fails_before_touching_the_table(stack, instance, monkeypatch) -> None:
    put_batch(stack, {"good.us.txt": b"2017-11-10,10,11,9,10.5,100,0\n"})
    assert execute_batch(instance=instance).success
    before = stack.table_rows()
    put_batch(
        stack, {"good.us.txt": b"2017-11-10,10,11,9,10.5,100,0\n2017-11-13,x,11,9,10.5,100,0\n2017-11-14,x,1,1,1,1,0\n"}
    )
    failed = execute_batch(instance=instance)
    assert not failed.success
    assert (
        "2 of 3 rows rejected (66.67%), above the 5.00% threshold: the frames and the table were not touched"
        in failed.error
    )
    check = checks_of_run(instance, failed.run_id)["rejected_share_below_threshold"]
    assert not check.passed and check.metadata["worst_companies"].value == {"good": pytest.approx(2 / 3)}
    assert stack.table_rows() == before
    assert stack.keys(f"Rejected/{failed.run_id}/") == [f"Rejected/{failed.run_id}/good.csv"]  # nothing lost

    monkeypatch.setenv("STOCK_PLATFORM_MAX_REJECTED_SHARE", "0.9")
    assert execute_batch(instance=instance).success
    assert len(stack.table_rows()) == 1


def test_a_file_over_the_size_limit_is_rejected_unread(stack, instance, monkeypatch) -> None:
    put_batch(
        stack, {"big.us.txt": b"2017-11-10,10,11,9,10.5,100,0\n" * 10, "small.us.txt": b"2017-11-10,1,1,1,1,1,0\n"}
    )
    monkeypatch.setenv("STOCK_PLATFORM_MAX_FILE_BYTES", "200")
    outcome = execute_batch(instance=instance)
    assert outcome.success, outcome.error
    assert outcome.summary.names(CompanyStatus.REJECTED) == ["big"]
    assert [r[0] for r in stack.query("SELECT DISTINCT company_name FROM {t}")] == ["small"]


def run_table_checks(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """What "Execute" on the checks tab (or `dagster job execute -j historical_stocks_data_checks_job`) runs."""
    return defs().resolve_job_def("historical_stocks_data_checks_job").execute_in_process(instance=instance)


def latest_check(instance: dg.DagsterInstance, name: str) -> dg.AssetCheckEvaluation:
    record = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(HISTORICAL_STOCKS_DATA, name))
    assert record is not None and record.event is not None and record.event.dagster_event is not None
    evaluation = record.event.dagster_event.event_specific_data
    assert isinstance(evaluation, dg.AssetCheckEvaluation)
    return evaluation


def test_table_checks_run_on_their_own_against_the_current_table(stack, instance) -> None:
    put_batch(stack, {"good.us.txt": b"2017-11-10,10,11,9,10.5,100,0\n"})
    assert execute_batch(instance=instance).success
    assert latest_check(instance, "has_consistent_ohlc").passed
    # Somebody edits the table by hand: only a check run against the table as it stands can see it.
    stack.query("UPDATE {t} SET low_value = 50 RETURNING 1")
    result = run_table_checks(instance)
    assert result.success
    evaluations = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(evaluations) == 5  # every table check recorded a real result, none skipped
    ohlc = latest_check(instance, "has_consistent_ohlc")
    assert not ohlc.passed and ohlc.metadata["examples"].value == ["good 2017-11-10"]
    assert stack.query("SELECT low_value FROM {t}") == [(50.0,)]  # checking changes nothing


def test_a_no_change_run_re_evaluates_the_checks_instead_of_hiding_them(stack, instance) -> None:
    put_batch(stack, {"odd.us.txt": b"2017-11-10,10,9,11,10.5,100,0\n"})  # low > high: a WARN
    assert execute_batch(instance=instance).success
    again = execute_batch(instance=instance)
    assert again.success and again.summary.commit is None  # nothing changed
    checks = checks_of_run(instance, again.run_id)
    assert set(checks) >= {"has_consistent_ohlc", "has_unique_keys"}
    assert not checks["has_consistent_ohlc"].passed  # the real result, visible after the no-change run too
