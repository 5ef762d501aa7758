"""Notification text (pure) and the run-status sensors, on an ephemeral instance with a recording SNS fake."""

import dagster as dg
import pytest

from stock_platform.batch.summary import (
    Commit,
    CompanyResult,
    CompanyStatus,
    ExtractState,
    RowCounts,
    RunSummary,
    StaleCompanies,
    TableState,
)
from stock_platform.notifications.messages import (
    REPORT_METADATA_KEY,
    RunFacts,
    RunOutcome,
    format_notification,
    subject_for,
)
from stock_platform.notifications.sensors import NOTIFICATION_TAG, build_notification_sensors
from stock_platform.tags import MARKER_TAG
from stock_platform_tests.fakes import RecordingSNS

SUCCESS, FAILURE, CANCELED = RunOutcome.SUCCESS, RunOutcome.FAILURE, RunOutcome.CANCELED
LOADED = CompanyResult(CompanyStatus.LOADED, RowCounts(100, 99, 1, 0))
SUMMARY = RunSummary(
    companies={
        **{f"c{i:03d}": LOADED for i in range(25)},
        "empt": CompanyResult(CompanyStatus.EMPTY, reason="file is empty"),
        "hdro": CompanyResult(CompanyStatus.EMPTY, reason="file has a header but no rows"),
        "same": CompanyResult(CompanyStatus.UNCHANGED),
    },
    missing=("zzzz.us.csv",),
    stale=StaleCompanies(("gone",), 40),
    rejects_uri="s3://src/Rejected/r1/",
    commit=Commit((*(f"c{i:03d}" for i in range(25)), "empt", "hdro"), 2_400, 75, 3, 0, version=7),
    table=TableState(rows=1_115_717, companies=497, min_date="1970-01-02", max_date="2017-11-10", version=7),
    extract=ExtractState("s3://src/Output/historical_stock_data.csv", 7, 1_115_717, regenerated=True),
)


def test_success_message_says_what_the_run_did() -> None:
    facts = RunFacts(
        "r1", "stock_batch_job", SUCCESS, "marker s3://m/.SUCCESS", 42.5, SUMMARY, run_url="http://ui/runs/r1"
    )
    n = format_notification(facts, "Stocks")
    assert n.subject == "Stocks_Pipeline_Success"
    assert n.attributes == {"status": "SUCCESS", "job": "stock_batch_job"}
    for text in (
        "Run r1 of stock_batch_job succeeded.",
        "Duration: 42.5 s",
        "Triggered by: marker s3://m/.SUCCESS",
        "http://ui/runs/r1",
        "loaded 25",
        "unchanged since their last load 1",
        "listed but missing 1",
        "rows read 2500 = valid 2475 + rejected 25 + duplicates dropped 0",
        "Loaded: c000, c001",
        "and 5 more",  # names up to the cap, then a count
        "Listed but missing: zzzz.us.csv",
        "Empty: empt, hdro",
        "Rejected rows: s3://src/Rejected/r1/",
        "Committed: 27 companies' rows replaced (inserted 2400, updated 75, deleted 3",
        "Table now: 1115717 rows, 497 companies",
        "no longer listed: 1 companies, 40 rows (gone)",
        "Output CSV: s3://src/Output/historical_stock_data.csv (rewritten)",
    ):
        assert text in n.body
    assert "Failed step" not in n.body


def test_a_summary_survives_its_round_trip_through_metadata() -> None:
    assert RunSummary.from_json(SUMMARY.to_json()) == SUMMARY


def test_a_stale_extract_is_called_stale() -> None:
    stale = RunSummary(
        table=TableState(10, 1, None, None, version=8),
        extract=ExtractState("s3://src/Output/x.csv", 7, 9, regenerated=False),
    )
    body = format_notification(RunFacts("r", "j", FAILURE, "t", summary=stale), "P").body
    assert "Output CSV: s3://src/Output/x.csv (STALE" in body


def test_failure_message_names_the_step_and_the_first_error_lines() -> None:
    error = "psycopg.OperationalError: connection refused\n" + "\n".join(f"frame {i}" for i in range(20))
    facts = RunFacts("r2", "stock_batch_job", FAILURE, "manual (UI, CLI or API)", 3.0, None, "load_stock_batch", error)
    n = format_notification(facts, "Stocks")
    assert n.subject == "Stocks_Pipeline_Failure" and n.attributes["status"] == "FAILURE"
    assert "FAILED" in n.body and "Failed step: load_stock_batch" in n.body
    assert "connection refused" in n.body and "frame 6" in n.body and "frame 7" not in n.body
    assert "13 more lines" in n.body


def test_early_failure_and_cancel_are_failures_that_say_so() -> None:
    early = format_notification(RunFacts("r3", "j", FAILURE, "t", None, None, None, "bad config"), "P")
    assert "before any step ran" in early.body and "bad config" in early.body
    canceled = format_notification(RunFacts("r4", "j", CANCELED, "t", error="The run was canceled."), "P")
    assert canceled.subject == "P_Pipeline_Failure" and "CANCELED" in canceled.body
    assert canceled.attributes["status"] == "CANCELED"


@pytest.mark.parametrize("prefix", ["x" * 300, "Börse\n📈 Alerts", "", "   "])
def test_subjects_are_ascii_and_within_100_characters(prefix: str) -> None:
    for success in (True, False):
        subject = subject_for(prefix, success)
        assert len(subject) <= 100 and subject.isascii() and subject.isprintable()
        assert subject.endswith("_Pipeline_Success" if success else "_Pipeline_Failure")


@dg.op
def fine() -> None:
    pass


@dg.op
def broken() -> None:
    raise ValueError("database unreachable: connection refused")


@dg.job(tags={MARKER_TAG: "s3://m/batch.SUCCESS"})
def good_job() -> None:
    fine()


@dg.job
def bad_job() -> None:
    broken()


@dg.op
def reports_what_it_did() -> dg.Output[None]:
    yield dg.AssetMaterialization(
        "prices", metadata={REPORT_METADATA_KEY: dg.MetadataValue.text("Downloaded 3 tickers")}
    )
    yield dg.Output(None)


@dg.op
def fails_saying_what_it_did() -> None:
    raise dg.Failure("2 tickers unavailable", metadata={REPORT_METADATA_KEY: "Landed 1 ticker; 2 unavailable"})


@dg.job
def reporting_job() -> None:
    reports_what_it_did()


@dg.job
def failing_reporting_job() -> None:
    fails_saying_what_it_did()


SENSORS = {
    s.name: s
    for s in build_notification_sensors(
        [good_job, bad_job, reporting_job, failing_reporting_job], 30, dg.DefaultSensorStatus.RUNNING
    )
}


def run_event(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> dg.DagsterEvent:
    [record] = instance.get_records_for_run(run_id, of_type=event_type).records
    return record.event_log_entry.dagster_event


def evaluate(
    name: str, instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType, sns: RecordingSNS
) -> None:
    run = instance.get_run_by_id(run_id)
    context = dg.build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=run_event(instance, run_id, event_type),
        dagster_instance=instance,
        dagster_run=run,
        resources={"sns": sns},
    )
    if name == "notify_failure_sensor":
        context = context.for_run_failure()
    SENSORS[name](context)


@pytest.fixture(autouse=True)
def clear_sent() -> None:
    RecordingSNS.sent.clear()


def test_success_sensor_publishes_one_message(instance) -> None:
    run_id = good_job.execute_in_process(instance=instance).run_id
    sns = RecordingSNS(topic_arn="arn:aws:sns:us-east-1:1:t", subject_prefix="Trading")
    evaluate("notify_success_sensor", instance, run_id, dg.DagsterEventType.RUN_SUCCESS, sns)
    evaluate("notify_success_sensor", instance, run_id, dg.DagsterEventType.RUN_SUCCESS, sns)  # a repeat is a no-op
    [(subject, body, attributes)] = RecordingSNS.sent
    assert subject == "Trading_Pipeline_Success" and attributes == {"status": "SUCCESS", "job": "good_job"}
    assert "Triggered by: marker s3://m/batch.SUCCESS" in body and f"/runs/{run_id}" in body
    assert instance.get_run_by_id(run_id).tags[NOTIFICATION_TAG] == "sent"


def test_failure_sensor_names_the_failed_step(instance) -> None:
    run_id = bad_job.execute_in_process(instance=instance, raise_on_error=False).run_id
    evaluate("notify_failure_sensor", instance, run_id, dg.DagsterEventType.RUN_FAILURE, RecordingSNS(topic_arn="t"))
    [(subject, body, attributes)] = RecordingSNS.sent
    assert subject == "StockPlatform_Pipeline_Failure" and attributes["status"] == "FAILURE"
    assert "Failed step: broken" in body and "ValueError: database unreachable: connection refused" in body


def test_early_failure_before_any_step(instance) -> None:
    run = instance.create_run_for_job(good_job)
    instance.report_run_failed(run, "Could not load the code location: STOCK_PLATFORM_SOURCE_BUCKET is not set")
    evaluate(
        "notify_failure_sensor", instance, run.run_id, dg.DagsterEventType.RUN_FAILURE, RecordingSNS(topic_arn="t")
    )
    [(subject, body, _)] = RecordingSNS.sent
    assert subject.endswith("_Pipeline_Failure")
    assert "before any step ran" in body and "STOCK_PLATFORM_SOURCE_BUCKET is not set" in body


def test_unreachable_sns_never_changes_the_run_and_is_retried_later(instance) -> None:
    run_id = good_job.execute_in_process(instance=instance).run_id
    evaluate(
        "notify_success_sensor",
        instance,
        run_id,
        dg.DagsterEventType.RUN_SUCCESS,
        RecordingSNS(topic_arn="t", fail=True),
    )
    run = instance.get_run_by_id(run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags[NOTIFICATION_TAG] == "pending"
    assert RecordingSNS.sent == []

    retry = SENSORS["notification_retry_sensor"]
    with dg.build_sensor_context(instance=instance, resources={"sns": RecordingSNS(topic_arn="t")}) as context:
        assert "Re-sent 1 of 1" in retry(context).skip_message
    assert len(RecordingSNS.sent) == 1 and RecordingSNS.sent[0][0].endswith("_Pipeline_Success")
    assert instance.get_run_by_id(run_id).tags[NOTIFICATION_TAG] == "sent"
    with dg.build_sensor_context(instance=instance, resources={"sns": RecordingSNS(topic_arn="t")}) as context:
        assert "No notification is waiting" in retry(context).skip_message
    assert len(RecordingSNS.sent) == 1


def test_canceled_run_is_reported_as_a_failure_that_says_so(instance) -> None:
    run = instance.create_run_for_job(good_job)
    instance.report_run_canceled(run)
    evaluate(
        "notify_canceled_sensor", instance, run.run_id, dg.DagsterEventType.RUN_CANCELED, RecordingSNS(topic_arn="t")
    )
    [(subject, body, attributes)] = RecordingSNS.sent
    assert subject == "StockPlatform_Pipeline_Failure" and attributes["status"] == "CANCELED"
    assert "was CANCELED" in body


def test_a_run_without_a_summary_says_what_it_is_known_to_have_committed() -> None:
    stopped = RunFacts("r5", "j", CANCELED, "t", committed_companies=["aapl", "msft"])
    assert "committed the rows of 2 companies before it ended: aapl, msft" in format_notification(stopped, "P").body
    nothing = format_notification(RunFacts("r6", "j", CANCELED, "t"), "P").body
    assert "no batch summary and no commit" in nothing


def test_a_pipeline_without_a_batch_summary_sends_its_own_report(instance) -> None:
    ok = reporting_job.execute_in_process(instance=instance).run_id
    failed = failing_reporting_job.execute_in_process(instance=instance, raise_on_error=False).run_id
    evaluate("notify_success_sensor", instance, ok, dg.DagsterEventType.RUN_SUCCESS, RecordingSNS(topic_arn="t"))
    evaluate("notify_failure_sensor", instance, failed, dg.DagsterEventType.RUN_FAILURE, RecordingSNS(topic_arn="t"))
    [(_, ok_body, _), (_, failed_body, _)] = RecordingSNS.sent
    assert "Downloaded 3 tickers" in ok_body and "no batch summary" not in ok_body
    assert "Landed 1 ticker; 2 unavailable" in failed_body and "Failed step: fails_saying_what_it_did" in failed_body
