"""The benchmark's split of a trader's wait (benchmarks/latency.py): which run a sample started, and its stages."""

from benchmarks.latency import stages

EARLIER = {"enqueued": 90.0, "launching": 91.0, "started": 93.0, "succeeded": 95.0}
THIS = {"enqueued": 103.0, "launching": 104.5, "started": 107.0, "succeeded": 110.0}
LATER = {"enqueued": 120.0, "launching": 121.0, "started": 123.0, "succeeded": 125.0}


def test_a_marker_is_split_by_the_first_run_queued_after_its_put() -> None:
    # The run-status sensor's message came 4 s after the run's success.
    assert stages(100.0, 114.0, [EARLIER, THIS, LATER]) == {
        "tick": 3.0,
        "queue": 1.5,
        "launch": 2.5,
        "run": 3.0,
        "message": 4.0,
    }


def test_an_alert_published_by_its_run_ends_the_run_stage_at_the_message() -> None:
    assert stages(100.0, 108.25, [EARLIER, THIS]) == {
        "tick": 3.0,
        "queue": 1.5,
        "launch": 2.5,
        "run": 1.25,
        "message": 0.0,
    }


def test_no_split_without_a_run_queued_after_the_put_or_when_the_message_came_before_it_started() -> None:
    assert stages(130.0, 140.0, [EARLIER, THIS, LATER]) is None
    assert stages(100.0, 105.0, [THIS]) is None  # not this run's message
    assert stages(100.0, 114.0, [{"enqueued": 103.0}]) is None  # never dequeued
