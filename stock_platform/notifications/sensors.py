"""Run-status sensors that publish one SNS message per run, and the retry of messages that could not be sent.

`run_facts` gathers what a message needs from the Dagster instance (the run's typed summary, from the Output CSV's
materialization or from the failure the batch step raised); `format_notification` (messages.py) writes it. A
notification problem never touches the run's own status: a failed publish (after boto3's retries with backoff) is
logged on the sensor tick, the run is tagged `stock_platform/notification=pending`, and `notification_retry_sensor`
sends it on a later tick.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from stock_platform.batch.keys import HISTORICAL_STOCKS_DATA
from stock_platform.batch.metadata import COMMITTED_COMPANIES_KEY, read_summary
from stock_platform.batch.summary import RunSummary, root_error
from stock_platform.notifications.messages import REPORT_METADATA_KEY, RunFacts, RunOutcome, format_notification
from stock_platform.resources.sns import SNSResource
from stock_platform.runtime import daemon_min_interval
from stock_platform.tags import (
    BACKFILL_TAG,
    MARKER_TAG,
    MESSAGE_ID_TAG,
    NOTIFICATION_TAG,
    SCHEDULE_NAME_TAG,
    SENSOR_NAME_TAG,
    NotificationState,
)


def run_summary(instance: dg.DagsterInstance, run_id: str) -> RunSummary | None:
    """The run's summary: from the batch step's failure when it failed, else the last materialization that
    carries one (the Output CSV's); None when the run recorded none."""
    failures = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    for record in failures:
        event = record.event_log_entry.dagster_event
        data = event.step_failure_data if event is not None else None
        if data is not None and data.user_failure_data is not None:
            summary = read_summary(data.user_failure_data.metadata)
            if summary is not None:
                return summary
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in reversed(records):
        materialization = record.asset_materialization
        if materialization is not None:
            summary = read_summary(materialization.metadata)
            if summary is not None:
                return summary
    return None


def _trigger(run: dg.DagsterRun) -> str:
    tags = run.tags
    if MARKER_TAG in tags:
        return f"marker {tags[MARKER_TAG]}"
    for tag, what in ((BACKFILL_TAG, "backfill"), (SENSOR_NAME_TAG, "sensor"), (SCHEDULE_NAME_TAG, "schedule")):
        if tag in tags:
            return f"{what} {tags[tag]}"
    return "manual (UI, CLI or API)"


def _outcome(status: dg.DagsterRunStatus) -> RunOutcome:
    if status == dg.DagsterRunStatus.SUCCESS:
        return RunOutcome.SUCCESS
    return RunOutcome.CANCELED if status == dg.DagsterRunStatus.CANCELED else RunOutcome.FAILURE


def _failure(instance: dg.DagsterInstance, run_id: str, outcome: RunOutcome) -> tuple[str | None, str | None]:
    """(failed step, first error) of a run that did not succeed."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.step_failure_data is not None:
            return event.step_key, root_error(event.step_failure_data.error)
    error: str | None = None
    ended = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED}
    ).records
    if ended:
        event = ended[-1].event_log_entry.dagster_event
        if event is not None:
            data_error = getattr(event.event_specific_data, "error", None)
            error = root_error(data_error) if data_error else event.message
    if outcome is RunOutcome.CANCELED:
        error = error or "The run was canceled."
    return None, error


def _committed_companies(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """What the run's table materialization says it committed (for a run that left no summary)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    companies: set[str] = set()
    for materialization in (r.asset_materialization for r in records):
        if materialization is not None and materialization.asset_key == HISTORICAL_STOCKS_DATA:
            committed = materialization.metadata.get(COMMITTED_COMPANIES_KEY)
            companies.update(committed.value if committed is not None and isinstance(committed.value, list) else [])
    return sorted(companies)


def run_reports(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """REPORT_METADATA_KEY texts of the run: its materializations', then a failed step's (`dg.Failure` metadata)."""
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.STEP_FAILURE}
    reports = []
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data.user_failure_data if event.step_failure_data else None
            metadata = data.metadata if data is not None else {}
        else:
            materialization = record.asset_materialization
            metadata = materialization.metadata if materialization is not None else {}
        value = metadata.get(REPORT_METADATA_KEY)
        if value is not None:
            reports.append(str(value.value))
    return reports


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    names: set[str] = set()
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if isinstance(evaluation, dg.AssetCheckEvaluation) and not evaluation.passed:
            names.add(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return sorted(names)


def run_facts(instance: dg.DagsterInstance, run: dg.DagsterRun, ui_base_url: str | None) -> RunFacts:
    outcome = _outcome(run.status)
    stats = instance.get_run_stats(run.run_id)
    duration = stats.end_time - stats.start_time if stats.start_time and stats.end_time else None
    failed_step, error = (None, None) if outcome is RunOutcome.SUCCESS else _failure(instance, run.run_id, outcome)
    summary = run_summary(instance, run.run_id)
    return RunFacts(
        run_id=run.run_id,
        job_name=run.job_name,
        status=outcome,
        trigger=_trigger(run),
        duration_s=duration,
        summary=summary,
        failed_step=failed_step,
        error=error,
        failed_checks=_failed_checks(instance, run.run_id),
        run_url=f"{ui_base_url.rstrip('/')}/runs/{run.run_id}" if ui_base_url else None,
        committed_companies=_committed_companies(instance, run.run_id) if summary is None else (),
        reports=run_reports(instance, run.run_id) if summary is None else (),
    )


def notify(instance: dg.DagsterInstance, run: dg.DagsterRun, sns: SNSResource, log: Any) -> str | None:
    """Publish the run's notification once; return the SNS message id, or None when it must be retried."""
    if run.tags.get(NOTIFICATION_TAG) == NotificationState.SENT:
        return run.tags.get(MESSAGE_ID_TAG)
    notification = format_notification(run_facts(instance, run, sns.ui_base_url), sns.subject_prefix)
    try:
        message_id = sns.publish(notification.subject, notification.body, notification.attributes)
    except Exception as error:  # noqa: BLE001 - never let a notification problem escape into the run
        log.error(f"Could not publish the notification of run {run.run_id} to {sns.topic_arn}; will retry: {error}")
        instance.add_run_tags(run.run_id, {NOTIFICATION_TAG: NotificationState.PENDING})
        return None
    instance.add_run_tags(run.run_id, {NOTIFICATION_TAG: NotificationState.SENT, MESSAGE_ID_TAG: message_id})
    log.info(f"Published {notification.subject} for run {run.run_id} (SNS message {message_id})")
    return message_id


def build_notification_sensors(
    jobs: Sequence[Any],  # define_asset_job results (their type is not exported by dagster)
    minimum_interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
) -> list[dg.SensorDefinition]:
    def on_status(name: str, status: dg.DagsterRunStatus, description: str) -> dg.SensorDefinition:
        @dg.run_status_sensor(
            name=name,
            run_status=status,
            description=description,
            monitored_jobs=list(jobs),
            minimum_interval_seconds=daemon_min_interval(minimum_interval_seconds),
            default_status=default_status,
        )
        def notify_on_status(context: dg.RunStatusSensorContext, sns: SNSResource) -> None:
            notify(context.instance, context.dagster_run, sns, context.log)

        return notify_on_status

    @dg.run_failure_sensor(
        name="notify_failure_sensor",
        description="Publishes <prefix>_Pipeline_Failure when a batch run fails, including before any step ran.",
        monitored_jobs=list(jobs),
        minimum_interval_seconds=daemon_min_interval(minimum_interval_seconds),
        default_status=default_status,
    )
    def notify_failure_sensor(context: dg.RunFailureSensorContext, sns: SNSResource) -> None:
        notify(context.instance, context.dagster_run, sns, context.log)

    @dg.sensor(
        name="notification_retry_sensor",
        minimum_interval_seconds=daemon_min_interval(max(minimum_interval_seconds, 60)),
        default_status=default_status,
        description="Re-sends notifications that could not be published when their run finished.",
    )
    def notification_retry_sensor(context: dg.SensorEvaluationContext, sns: SNSResource) -> dg.SkipReason:
        pending = context.instance.get_runs(
            filters=dg.RunsFilter(tags={NOTIFICATION_TAG: NotificationState.PENDING}), limit=100
        )
        sent = [run.run_id for run in pending if notify(context.instance, run, sns, context.log)]
        if not pending:
            return dg.SkipReason("No notification is waiting to be re-sent")
        return dg.SkipReason(f"Re-sent {len(sent)} of {len(pending)} pending notifications")

    return [
        on_status(
            "notify_success_sensor",
            dg.DagsterRunStatus.SUCCESS,
            "Publishes <prefix>_Pipeline_Success to the SNS topic when a batch run succeeds.",
        ),
        notify_failure_sensor,
        on_status(
            "notify_canceled_sensor",
            dg.DagsterRunStatus.CANCELED,
            "Publishes <prefix>_Pipeline_Failure, saying so, when a batch run is canceled.",
        ),
        notification_retry_sensor,
    ]
