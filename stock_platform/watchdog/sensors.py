"""The watchdog sensor: observe, decide (incidents.py), publish what is owed, store the incidents in the cursor.

Dagster OSS sends nothing when a sensor tick fails, when a marker sits in the bucket without a run, or when a run
never leaves the queue. Each of these is an incident here: one `<prefix>_Pipeline_Failure` message when it opens
and one `<prefix>_Pipeline_Recovered` message when it clears, through the same SNS topic as the run notifications.
The open incidents live in the cursor, so a restarted daemon resumes from the stored cursor and re-sends nothing.
A publish that fails leaves its notice owed; the next tick tries again.
"""

import time
from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from stock_platform.notifications.messages import SUBJECT_LIMIT, subject_for
from stock_platform.resources.s3 import MonitoredBucket
from stock_platform.resources.sns import SNSResource
from stock_platform.runtime import daemon_min_interval
from stock_platform.watchdog import incidents
from stock_platform.watchdog.incidents import Kind, Limits, Notice, Observations
from stock_platform.watchdog.observe import marker_uploads, sensor_ticks, waiting_runs

WATCHDOG_SENSOR = "watchdog_sensor"
T = TypeVar("T")
FAILURE_SUFFIX = "_Pipeline_Failure"
RECOVERY_SUFFIX = "_Pipeline_Recovered"


def watchdog_subject(prefix: str, recovery: bool) -> str:
    """`<prefix>_Pipeline_Failure` (what subscribers filtering on failures already receive), or
    `<prefix>_Pipeline_Recovered`; the prefix cleaned as for run notifications, at most 100 characters."""
    if not recovery:
        return subject_for(prefix, success=False)
    base = subject_for(prefix, success=False).removesuffix(FAILURE_SUFFIX)
    return base[: SUBJECT_LIMIT - len(RECOVERY_SUFFIX)] + RECOVERY_SUFFIX


def _publish(sns: SNSResource, state: incidents.WatchState, notice: Notice) -> None:
    kind: Kind = state.incidents[notice.incident_id].kind
    sns.publish(
        watchdog_subject(sns.subject_prefix, notice.recovery),
        notice.text,
        {
            "status": "RECOVERED" if notice.recovery else "FAILURE",
            "job": WATCHDOG_SENSOR,
            "incident": notice.incident_id[:256],
            "kind": kind.value,
        },
    )


def _sensor_names(context: dg.SensorEvaluationContext) -> set[str]:
    """Every sensor of the code location (the daemon always evaluates a sensor with its repository)."""
    if context.repository_def is None:
        raise RuntimeError("the code location's sensors are unknown (evaluated without its repository)")
    return {s.name for s in context.repository_def.sensor_defs}


def build_watchdog_sensor(
    limits: Limits, minimum_interval_seconds: int, default_status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    @dg.sensor(
        name=WATCHDOG_SENSOR,
        minimum_interval_seconds=daemon_min_interval(minimum_interval_seconds),
        default_status=default_status,
        description=(
            "Sends one failure notice per incident Dagster stays silent about (a failed sensor tick, a marker "
            "without a run, a run that does not start) and one recovery notice when it clears."
        ),
    )
    def watchdog_sensor(
        context: dg.SensorEvaluationContext, sns: SNSResource, monitored: MonitoredBucket
    ) -> dg.SensorResult:
        state = incidents.load(context.cursor)
        now = time.time()
        open_ids = [i.id.split(":", 1) for i in state.incidents.values()]
        origin = context.code_location_origin
        unobserved: set[Kind] = set()

        def observe(kind: Kind, read: Callable[[], list[T]]) -> list[T]:
            try:
                return read()
            except Exception as error:  # noqa: BLE001 - the other kinds are still watched
                # Left as they were, never "recovered"; the polling trigger's ticks fail on the same bucket and
                # are watched (the queue trigger does not read it: then only this log says so, docs/operating.md).
                context.log.error(f"Could not observe {kind.value}: {error}; its incidents are left as they were")
                unobserved.add(kind)
                return []

        watched_markers = {key for kind, key in open_ids if kind == "marker"}
        watched_runs = [key for kind, key in open_ids if kind == "run"]
        location = origin.location_name if origin else None
        ticks = observe(Kind.TICK_ERROR, lambda: sensor_ticks(context.instance, _sensor_names(context), location))
        markers = observe(
            Kind.MARKER_WITHOUT_RUN, lambda: marker_uploads(context.instance, monitored, limits, now, watched_markers)
        )
        runs = observe(Kind.RUN_NOT_STARTED, lambda: waiting_runs(context.instance, watched_runs))
        observations = Observations(now, ticks, markers, runs, unobserved=frozenset(unobserved))
        state = incidents.advance(state, observations, limits)
        published, failed = 0, 0
        for notice in incidents.owed(state):
            try:
                _publish(sns, state, notice)
            except Exception as error:  # noqa: BLE001 - owed notices stay in the cursor for the next tick
                failed += 1
                context.log.error(f"Could not publish the notice of incident {notice.incident_id}: {error}")
                continue
            state = incidents.sent(state, notice)
            published += 1
        open_now = sorted(i.id for i in state.incidents.values() if i.resolution is None)
        summary = f"{len(open_now)} open incident(s); {published} notice(s) sent, {failed} owed"
        context.log.info(f"{summary}: {open_now}" if open_now else summary)
        return dg.SensorResult(skip_reason=summary, cursor=incidents.dump(state))

    return watchdog_sensor
