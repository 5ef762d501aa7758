"""What the watchdog decides, Dagster-free: which observations are incidents, which incidents cleared and why, and
which notices are still owed. The sensor (sensors.py) only observes, publishes and stores the state.

An incident has a stable id (`tick:<sensor>`, `marker:<marker run key>`, `run:<run id>`), so observing the same
problem again on a later tick, or after a daemon restart with the stored cursor, is the same incident and is not
announced twice. The state records which notices were sent: a failure notice that could not be published is
owed until it is sent, and a recovery notice is sent only for an incident whose failure notice was.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum


class Kind(str, Enum):
    TICK_ERROR = "tick_error"
    MARKER_WITHOUT_RUN = "marker_without_run"
    RUN_NOT_STARTED = "run_not_started"


@dataclass(frozen=True)
class SensorTick:
    """The latest finished tick of a sensor of the code location."""

    sensor: str
    failed: bool
    timestamp: float
    error: str | None = None
    running: bool = True  # False: the sensor is stopped


@dataclass(frozen=True)
class MarkerUpload:
    uri: str
    run_key: str  # the marker upload's identity (resources/s3.py Marker.run_key)
    uploaded: float
    has_run: bool | None = None  # None: not looked up (too young to matter, or outside the window)


@dataclass(frozen=True)
class WaitingRun:
    """A run and its status, with the time it was created."""

    run_id: str
    job_name: str
    status: str  # DagsterRunStatus value
    created: float


WAITING_STATUSES = ("NOT_STARTED", "QUEUED", "STARTING")


@dataclass(frozen=True)
class Limits:
    marker_age_s: float  # a marker older than this without a run is an incident
    marker_window_s: float  # markers older than this are no longer watched
    run_start_s: float  # a run waiting to start (NOT_STARTED, QUEUED, STARTING) longer than this is an incident


@dataclass(frozen=True)
class Observations:
    now: float
    ticks: Sequence[SensorTick] = ()
    markers: Sequence[MarkerUpload] = ()
    runs: Sequence[WaitingRun] = ()  # waiting runs, and the current status of runs named by open incidents
    # Kinds that could not be observed this time (e.g. the bucket could not be listed): their incidents neither
    # open nor clear, so an outage of what the watchdog reads is never announced as a recovery.
    unobserved: frozenset[Kind] = frozenset()


@dataclass(frozen=True)
class Incident:
    id: str
    kind: Kind
    detail: str  # what was observed, for the failure notice
    since: float  # when the watchdog first saw it
    announced: bool = False  # the failure notice was published
    resolution: str | None = None  # set once the incident cleared: why (the recovery notice is owed)


@dataclass(frozen=True)
class WatchState:
    incidents: dict[str, Incident] = field(default_factory=dict)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def problems(obs: Observations, limits: Limits) -> dict[str, tuple[Kind, str]]:
    """Every incident present in `obs`, by id, with a one-line description."""
    found: dict[str, tuple[Kind, str]] = {}
    for tick in obs.ticks:
        if tick.failed and tick.running:
            error = (tick.error or "no error recorded").strip().splitlines()[-1:] or ["no error recorded"]
            found[f"tick:{tick.sensor}"] = (
                Kind.TICK_ERROR,
                f"Sensor {tick.sensor}: its latest tick, at {_when(tick.timestamp)}, failed: {error[0]}",
            )
    for marker in obs.markers:
        age = obs.now - marker.uploaded
        if marker.has_run is False and limits.marker_age_s < age <= limits.marker_window_s:
            found[f"marker:{marker.run_key}"] = (
                Kind.MARKER_WITHOUT_RUN,
                f"Marker {marker.uri}, uploaded at {_when(marker.uploaded)}, has no run after {_duration(age)} "
                f"(limit {_duration(limits.marker_age_s)})",
            )
    for run in obs.runs:
        waited = obs.now - run.created
        if run.status in WAITING_STATUSES and waited > limits.run_start_s:
            found[f"run:{run.run_id}"] = (
                Kind.RUN_NOT_STARTED,
                f"Run {run.run_id} of {run.job_name} is still {run.status} {_duration(waited)} after it was "
                f"created (limit {_duration(limits.run_start_s)})",
            )
    return found


def _tick_resolution(sensor: str, obs: Observations) -> str:
    tick = next((t for t in obs.ticks if t.sensor == sensor), None)
    if tick is None:
        return f"sensor {sensor} is no longer defined or has never ticked since"
    if not tick.running:
        return f"sensor {sensor} is stopped"
    return f"the latest tick of sensor {sensor}, at {_when(tick.timestamp)}, succeeded"


def _marker_resolution(run_key: str, obs: Observations, limits: Limits) -> str:
    marker = next((m for m in obs.markers if m.run_key == run_key), None)
    if marker is None:
        return "the marker was deleted (or overwritten) before a run started for it"
    if marker.has_run:
        return "a run was started for the marker"
    return (
        f"the marker is now older than the watch window ({limits.marker_window_s / 3600:.0f} h) and is no "
        "longer watched; no run was started for it"
    )


def resolution(incident: Incident, obs: Observations, limits: Limits) -> str:
    """Why an incident that is no longer observed cleared, as far as the observations tell."""
    key = incident.id.split(":", 1)[1]
    if incident.kind is Kind.TICK_ERROR:
        return _tick_resolution(key, obs)
    if incident.kind is Kind.MARKER_WITHOUT_RUN:
        return _marker_resolution(key, obs, limits)
    run = next((r for r in obs.runs if r.run_id == key), None)
    return f"the run is now {run.status}" if run is not None else "the run was deleted"


def advance(state: WatchState, obs: Observations, limits: Limits) -> WatchState:
    """The state after observing `obs`: new incidents open (failure notice owed), vanished ones clear (recovery
    notice owed if the failure notice went out, else dropped), and a cleared one that recurs before its recovery
    notice went out is open again without a second failure notice."""
    found = problems(obs, limits)
    incidents: dict[str, Incident] = {}
    for id_, incident in state.incidents.items():
        if incident.kind in obs.unobserved:
            incidents[id_] = incident
        elif id_ in found:
            incidents[id_] = replace(incident, detail=found[id_][1], resolution=None)
        elif incident.resolution is not None:
            incidents[id_] = incident  # its recovery notice is still owed
        elif incident.announced:
            incidents[id_] = replace(incident, resolution=resolution(incident, obs, limits))
        # An incident that cleared before its failure notice could be published is dropped: nothing is owed.
    for id_, (kind, detail) in found.items():
        if id_ not in incidents and kind not in obs.unobserved:
            incidents[id_] = Incident(id_, kind, detail, since=obs.now)
    return WatchState(incidents)


@dataclass(frozen=True)
class Notice:
    incident_id: str
    recovery: bool
    text: str


_WHAT = {
    Kind.TICK_ERROR: "a sensor tick failed",
    Kind.MARKER_WITHOUT_RUN: "a marker has no run",
    Kind.RUN_NOT_STARTED: "a run has not started",
}


def owed(state: WatchState) -> list[Notice]:
    """The notices to publish now, oldest incident first."""
    notices = []
    for incident in sorted(state.incidents.values(), key=lambda i: (i.since, i.id)):
        if incident.resolution is not None:
            text = (
                f"RECOVERED: {_WHAT[incident.kind]} (incident {incident.id}, open since {_when(incident.since)}).\n"
                f"Cleared because {incident.resolution}.\nWas: {incident.detail}\n"
            )
            notices.append(Notice(incident.id, True, text))
        elif not incident.announced:
            text = (
                f"WATCHDOG: {_WHAT[incident.kind]} (incident {incident.id}).\n{incident.detail}\n"
                "One recovery notice follows when it clears; nothing more is sent about it until then.\n"
            )
            notices.append(Notice(incident.id, False, text))
    return notices


def sent(state: WatchState, notice: Notice) -> WatchState:
    """The state once `notice` was published: a recovered incident is closed, an announced one remembered."""
    incidents = dict(state.incidents)
    if notice.recovery:
        incidents.pop(notice.incident_id, None)
    elif notice.incident_id in incidents:
        incidents[notice.incident_id] = replace(incidents[notice.incident_id], announced=True)
    return WatchState(incidents)


def dump(state: WatchState) -> str:
    return json.dumps(
        {"incidents": [{**asdict(i), "kind": i.kind.value} for i in state.incidents.values()]},
        separators=(",", ":"),
        sort_keys=True,
    )


def load(cursor: str | None) -> WatchState:
    if not cursor:
        return WatchState()
    raw = json.loads(cursor)
    incidents = [Incident(**{**item, "kind": Kind(item["kind"])}) for item in raw.get("incidents", [])]
    return WatchState({i.id: i for i in incidents})
