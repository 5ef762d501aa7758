"""The watchdog's decisions (watchdog/incidents.py): which observations are incidents, one failure notice and one
recovery notice per incident, and a state that survives a restart through the cursor."""

import json

import dagster as dg
import pytest

from stock_platform.definitions import defs
from stock_platform.settings import Settings
from stock_platform.watchdog.definitions import build_watchdog_defs
from stock_platform.watchdog.incidents import (
    Kind,
    Limits,
    MarkerUpload,
    Notice,
    Observations,
    SensorTick,
    WaitingRun,
    WatchState,
    advance,
    dump,
    load,
    owed,
    problems,
    sent,
)
from stock_platform.watchdog.sensors import watchdog_subject

LIMITS = Limits(marker_age_s=600, marker_window_s=86400, run_start_s=900)
NOW = 1_800_000_000.0


def failed_tick(sensor: str = "s3_marker_sensor", at: float = NOW - 30) -> SensorTick:
    return SensorTick(sensor, failed=True, timestamp=at, error="Traceback ...\nRuntimeError: bucket gone")


def marker(age: float, has_run: bool | None = False, key: str = "m.SUCCESS@t#e") -> MarkerUpload:
    return MarkerUpload(uri="s3://b/m.SUCCESS", run_key=key, uploaded=NOW - age, has_run=has_run)


def queued(waited: float, status: str = "QUEUED", run_id: str = "r1") -> WaitingRun:
    return WaitingRun(run_id, "stock_batch_job", status, created=NOW - waited)


def tick_all_sent(state: WatchState, obs: Observations) -> tuple[WatchState, list[Notice]]:
    """One watchdog tick whose every publish succeeds; the cursor round-trips as on a daemon restart."""
    state = advance(load(dump(state)), obs, LIMITS)
    notices = owed(state)
    for notice in notices:
        state = sent(state, notice)
    return state, notices


class TestProblems:
    def test_a_failed_tick_of_a_running_sensor_is_an_incident_named_by_its_error(self) -> None:
        [(id_, (kind, detail))] = problems(Observations(NOW, ticks=[failed_tick()]), LIMITS).items()
        assert (id_, kind) == ("tick:s3_marker_sensor", Kind.TICK_ERROR)
        assert "RuntimeError: bucket gone" in detail

    @pytest.mark.parametrize(
        "tick",
        [
            SensorTick("s", failed=False, timestamp=NOW),
            SensorTick("s", failed=True, timestamp=NOW, running=False),
        ],
    )
    def test_a_succeeded_tick_or_a_stopped_sensor_is_not(self, tick: SensorTick) -> None:
        assert problems(Observations(NOW, ticks=[tick]), LIMITS) == {}

    @pytest.mark.parametrize(
        ("upload", "incident"),
        [
            (marker(601), True),
            (marker(599), False),  # younger than the limit
            (marker(601, has_run=True), False),
            (marker(86401), False),  # outside the window
            (marker(601, has_run=None), False),  # not looked up
        ],
    )
    def test_a_marker_without_a_run_past_the_age_limit(self, upload: MarkerUpload, incident: bool) -> None:
        found = problems(Observations(NOW, markers=[upload]), LIMITS)
        assert (f"marker:{upload.run_key}" in found) is incident

    @pytest.mark.parametrize(
        ("run", "incident"),
        [
            (queued(901), True),
            (queued(901, "STARTING"), True),
            (queued(901, "NOT_STARTED"), True),
            (queued(899), False),
            (queued(5000, "STARTED"), False),
        ],
    )
    def test_a_run_waiting_to_start_past_the_limit(self, run: WaitingRun, incident: bool) -> None:
        assert ("run:r1" in problems(Observations(NOW, runs=[run]), LIMITS)) is incident


class TestNotices:
    def test_one_failure_notice_then_silence_then_one_recovery_notice(self) -> None:
        state, notices = tick_all_sent(WatchState(), Observations(NOW, ticks=[failed_tick()]))
        assert [(n.incident_id, n.recovery) for n in notices] == [("tick:s3_marker_sensor", False)]
        for later in (60, 120):  # still failing: nothing more
            state, notices = tick_all_sent(state, Observations(NOW + later, ticks=[failed_tick(at=NOW + later)]))
            assert notices == []
        ok = SensorTick("s3_marker_sensor", failed=False, timestamp=NOW + 180)
        state, notices = tick_all_sent(state, Observations(NOW + 180, ticks=[ok]))
        [recovery] = notices
        assert recovery.recovery and "succeeded" in recovery.text and "bucket gone" in recovery.text
        assert state.incidents == {}
        assert tick_all_sent(state, Observations(NOW + 240, ticks=[ok]))[1] == []

    def test_a_failed_publish_stays_owed_and_is_sent_once_later(self) -> None:
        state = advance(WatchState(), Observations(NOW, runs=[queued(1000)]), LIMITS)
        assert [n.incident_id for n in owed(state)] == ["run:r1"]  # publish failed: not marked sent
        state, notices = tick_all_sent(state, Observations(NOW + 60, runs=[queued(1060)]))
        assert [n.incident_id for n in notices] == ["run:r1"]
        assert tick_all_sent(state, Observations(NOW + 120, runs=[queued(1120)]))[1] == []

    def test_an_incident_that_clears_before_its_notice_went_out_sends_nothing(self) -> None:
        state = advance(WatchState(), Observations(NOW, runs=[queued(1000)]), LIMITS)
        state, notices = tick_all_sent(state, Observations(NOW + 60, runs=[queued(1060, "STARTED")]))
        assert notices == [] and state.incidents == {}

    def test_a_recovery_that_could_not_be_sent_is_cancelled_if_the_incident_recurs(self) -> None:
        state, _ = tick_all_sent(WatchState(), Observations(NOW, ticks=[failed_tick()]))
        ok = SensorTick("s3_marker_sensor", failed=False, timestamp=NOW + 60)
        state = advance(state, Observations(NOW + 60, ticks=[ok]), LIMITS)  # recovery owed, publish fails
        assert [n.recovery for n in owed(state)] == [True]
        state, notices = tick_all_sent(state, Observations(NOW + 120, ticks=[failed_tick(at=NOW + 120)]))
        assert notices == []  # failing again: still the same incident, already announced

    @pytest.mark.parametrize(
        ("later", "reason"),
        [
            ([marker(700, has_run=True)], "a run was started"),
            ([], "deleted"),
            ([marker(90000, has_run=None)], "older than the watch window"),
        ],
    )
    def test_a_marker_incident_says_why_it_cleared(self, later: list[MarkerUpload], reason: str) -> None:
        state, _ = tick_all_sent(WatchState(), Observations(NOW, markers=[marker(650)]))
        _, [notice] = tick_all_sent(state, Observations(NOW + 50, markers=later))
        assert notice.recovery and reason in notice.text

    @pytest.mark.parametrize(
        ("later", "reason"), [([queued(2000, "STARTED")], "the run is now STARTED"), ([], "the run was deleted")]
    )
    def test_a_run_incident_says_why_it_cleared(self, later: list[WaitingRun], reason: str) -> None:
        state, _ = tick_all_sent(WatchState(), Observations(NOW, runs=[queued(1000)]))
        _, [notice] = tick_all_sent(state, Observations(NOW + 60, runs=later))
        assert reason in notice.text

    def test_what_could_not_be_observed_neither_opens_nor_clears(self) -> None:
        state, _ = tick_all_sent(WatchState(), Observations(NOW, markers=[marker(650)]))
        blind = Observations(NOW + 60, runs=[queued(1000)], unobserved=frozenset({Kind.MARKER_WITHOUT_RUN}))
        state, notices = tick_all_sent(state, blind)
        assert [n.incident_id for n in notices] == ["run:r1"]  # no false recovery of the marker incident
        assert set(state.incidents) == {"marker:m.SUCCESS@t#e", "run:r1"}
        runs_unknown = Observations(NOW + 120, unobserved=frozenset({Kind.RUN_NOT_STARTED}), markers=[marker(770)])
        assert tick_all_sent(state, runs_unknown)[1] == []

    def test_the_stopped_sensor_clears_its_incident_saying_so(self) -> None:
        state, _ = tick_all_sent(WatchState(), Observations(NOW, ticks=[failed_tick()]))
        stopped = SensorTick("s3_marker_sensor", failed=True, timestamp=NOW, running=False)
        _, [notice] = tick_all_sent(state, Observations(NOW + 60, ticks=[stopped]))
        assert "is stopped" in notice.text

    def test_the_cursor_is_json_with_stable_incident_ids(self) -> None:
        state, _ = tick_all_sent(WatchState(), Observations(NOW, ticks=[failed_tick()], runs=[queued(1000)]))
        raw = json.loads(dump(state))
        assert sorted(i["id"] for i in raw["incidents"]) == ["run:r1", "tick:s3_marker_sensor"]
        assert all(i["announced"] for i in raw["incidents"])
        assert load(dump(state)) == state


class TestSubjects:
    def test_failure_subjects_are_the_run_notifications_and_recoveries_say_so(self) -> None:
        assert watchdog_subject("Prod", recovery=False) == "Prod_Pipeline_Failure"
        assert watchdog_subject("Prod", recovery=True) == "Prod_Pipeline_Recovered"
        assert len(watchdog_subject("x" * 200, recovery=True)) == 100


class TestDefinitions:
    def test_the_platform_builds_the_watchdog_and_the_queue_trigger_when_configured(self, monkeypatch) -> None:
        for name, value in {
            "STOCK_PLATFORM_SOURCE_BUCKET": "source",
            "STOCK_PLATFORM_DATABASE_URL": "postgresql://user@localhost/db",
            "STOCK_PLATFORM_SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:topic",
            "STOCK_PLATFORM_MARKER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/markers",
        }.items():
            monkeypatch.setenv(name, value)
        definitions = defs()
        dg.Definitions.validate_loadable(definitions)
        names = {s.name for s in definitions.sensors or []}
        assert {"watchdog_sensor", "s3_marker_queue_sensor"} <= names and "s3_marker_sensor" not in names
        monkeypatch.delenv("STOCK_PLATFORM_SNS_TOPIC_ARN")
        monkeypatch.delenv("STOCK_PLATFORM_MARKER_QUEUE_URL")
        names = {s.name for s in defs().sensors or []}
        assert "s3_marker_sensor" in names and not names & {"watchdog_sensor", "s3_marker_queue_sensor"}

    def test_the_watchdog_exists_only_with_a_topic(self) -> None:
        base = Settings(sensor_interval_seconds=30, sensors_enabled=True, notifications_enabled=False)
        assert not list(build_watchdog_defs(base).sensors or [])
        with_topic = Settings(sensor_interval_seconds=30, sensors_enabled=True, notifications_enabled=True)
        [sensor] = build_watchdog_defs(with_topic).sensors or []
        assert isinstance(sensor, dg.SensorDefinition) and sensor.name == "watchdog_sensor"
