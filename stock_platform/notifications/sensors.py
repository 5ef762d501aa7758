"""Run-status sensors that publish one SNS message per run, and the retry of messages that could not be sent.

A notification problem never touches the run's own status: a failed publish (after boto3's retries with backoff)
is logged on the sensor tick, the run is tagged `stock_platform/notification=pending`, and
`notification_retry_sensor` sends it on a later tick.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from stock_platform.batch.keys import COMPANY_STOCK_PRICES, HISTORICAL_STOCK_DATA_CSV
from stock_platform.batch.sensors import MARKER_TAG
from stock_platform.batch.summary import LOADED, BatchSummary, root_error
from stock_platform.notifications.messages import RunFacts, format_notification
from stock_platform.resources.sns import SNSResource

NOTIFICATION_TAG = "stock_platform/notification"  # "sent" or "pending"
MESSAGE_ID_TAG = "stock_platform/notification_message_id"


def run_summary(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """The run's summary as plain values: historical_stock_data_csv's metadata, or, in a run that did not write
    the CSV (part of a backfill), totals over its company_stock_prices materializations ({} if neither)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    materializations = [r.asset_materialization for r in records if r.asset_materialization is not None]
    for materialization in reversed(materializations):
        if materialization.asset_key == HISTORICAL_STOCK_DATA_CSV:
            return {k: v.value for k, v in materialization.metadata.items()}
    summary = BatchSummary()
    for materialization in materializations:
        if materialization.asset_key == COMPANY_STOCK_PRICES and materialization.partition:
            values = {k: v.value for k, v in materialization.metadata.items()}
            counts = {k: int(values.get(k) or 0) for k in ("rows_read", "rows_loaded", "rows_rejected", "duplicates_dropped")}
            summary.add(materialization.partition, str(values.get("status", LOADED)), counts)
    return {**summary.as_metadata(), "summary": summary.details()} if summary.statuses else {}


def _trigger(run: dg.DagsterRun) -> str:
    tags = run.tags
    if MARKER_TAG in tags:
        return f"marker {tags[MARKER_TAG]}"
    if "dagster/backfill" in tags:
        return f"backfill {tags['dagster/backfill']}"
    if "dagster/sensor_name" in tags:
        return f"sensor {tags['dagster/sensor_name']}"
    if "dagster/schedule_name" in tags:
        return f"schedule {tags['dagster/schedule_name']}"
    return "manual (UI, CLI or API)"


def run_facts(instance: dg.DagsterInstance, run: dg.DagsterRun, ui_base_url: str | None) -> RunFacts:
    status = {dg.DagsterRunStatus.SUCCESS: "SUCCESS", dg.DagsterRunStatus.CANCELED: "CANCELED"}.get(run.status, "FAILURE")
    stats = instance.get_run_stats(run.run_id)
    duration = stats.end_time - stats.start_time if stats.start_time and stats.end_time else None
    failed_step = error = None
    if status != "SUCCESS":
        step_failures = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
        if step_failures:
            event = step_failures[0].event_log_entry.dagster_event
            failed_step = event.step_key
            error = root_error(event.step_failure_data.error)
        else:
            run_failures = instance.get_records_for_run(
                run.run_id, of_type={dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED}
            ).records
            if run_failures:
                event = run_failures[-1].event_log_entry.dagster_event
                data = event.event_specific_data
                error = root_error(data.error) if getattr(data, "error", None) else event.message
            if status == "CANCELED":
                error = error or "The run was canceled."
    checks = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    failed_checks = sorted(
        {
            f"{e.asset_key.to_user_string()}:{e.check_name}"
            for r in checks
            if (e := r.event_log_entry.dagster_event.event_specific_data) is not None and not e.passed
        }
    )
    return RunFacts(
        run_id=run.run_id,
        job_name=run.job_name,
        status=status,
        trigger=_trigger(run),
        duration_s=duration,
        summary=run_summary(instance, run.run_id),
        failed_step=failed_step,
        error=error,
        failed_checks=failed_checks,
        run_url=f"{ui_base_url.rstrip('/')}/runs/{run.run_id}" if ui_base_url else None,
    )


def notify(instance: dg.DagsterInstance, run: dg.DagsterRun, sns: SNSResource, log: Any) -> str | None:
    """Publish the run's notification once; return the SNS message id, or None when it must be retried."""
    if run.tags.get(NOTIFICATION_TAG) == "sent":
        return run.tags.get(MESSAGE_ID_TAG)
    notification = format_notification(run_facts(instance, run, sns.ui_base_url), sns.subject_prefix)
    try:
        message_id = sns.publish(notification.subject, notification.body, notification.attributes)
    except Exception as error:  # noqa: BLE001 - never let a notification problem escape into the run
        log.error(f"Could not publish the notification of run {run.run_id} to {sns.topic_arn}; will retry: {error}")
        instance.add_run_tags(run.run_id, {NOTIFICATION_TAG: "pending"})
        return None
    instance.add_run_tags(run.run_id, {NOTIFICATION_TAG: "sent", MESSAGE_ID_TAG: message_id})
    log.info(f"Published {notification.subject} for run {run.run_id} (SNS message {message_id})")
    return message_id


def build_notification_sensors(
    jobs: Sequence[Any],  # define_asset_job results (their type is not exported by dagster)
    minimum_interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
) -> list[dg.SensorDefinition]:
    common = {
        "monitored_jobs": list(jobs),
        "minimum_interval_seconds": minimum_interval_seconds,
        "default_status": default_status,
    }

    def on_status(name: str, status: dg.DagsterRunStatus, description: str) -> dg.SensorDefinition:
        @dg.run_status_sensor(name=name, run_status=status, description=description, **common)
        def notify_on_status(context: dg.RunStatusSensorContext, sns: SNSResource) -> None:
            notify(context.instance, context.dagster_run, sns, context.log)

        return notify_on_status

    notify_success_sensor = on_status(
        "notify_success_sensor",
        dg.DagsterRunStatus.SUCCESS,
        "Publishes <prefix>_Pipeline_Success to the SNS topic when a batch run succeeds.",
    )
    notify_canceled_sensor = on_status(
        "notify_canceled_sensor",
        dg.DagsterRunStatus.CANCELED,
        "Publishes <prefix>_Pipeline_Failure, saying so, when a batch run is canceled.",
    )

    @dg.run_failure_sensor(
        name="notify_failure_sensor",
        description="Publishes <prefix>_Pipeline_Failure when a batch run fails, including before any step ran.",
        **common,
    )
    def notify_failure_sensor(context: dg.RunFailureSensorContext, sns: SNSResource) -> None:
        notify(context.instance, context.dagster_run, sns, context.log)

    @dg.sensor(
        name="notification_retry_sensor",
        minimum_interval_seconds=max(minimum_interval_seconds, 60),
        default_status=default_status,
        description="Re-sends notifications that could not be published when their run finished.",
    )
    def notification_retry_sensor(context: dg.SensorEvaluationContext, sns: SNSResource) -> dg.SkipReason:
        pending = context.instance.get_runs(filters=dg.RunsFilter(tags={NOTIFICATION_TAG: "pending"}), limit=100)
        sent = [run.run_id for run in pending if notify(context.instance, run, sns, context.log)]
        if not pending:
            return dg.SkipReason("No notification is waiting to be re-sent")
        return dg.SkipReason(f"Re-sent {len(sent)} of {len(pending)} pending notifications")

    return [notify_success_sensor, notify_failure_sensor, notify_canceled_sensor, notification_retry_sensor]
