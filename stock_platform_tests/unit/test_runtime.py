"""Process-wide settings the platform's definitions apply when they load (stock_platform/runtime.py)."""

import os

from stock_platform.definitions import defs
from stock_platform.runtime import EVENT_BATCH_SIZE, EVENT_BATCH_SIZE_DEFAULT


def test_loading_the_definitions_turns_event_batches_on(monkeypatch) -> None:
    monkeypatch.delenv(EVENT_BATCH_SIZE, raising=False)
    defs()
    assert os.environ[EVENT_BATCH_SIZE] == EVENT_BATCH_SIZE_DEFAULT


def test_a_size_the_environment_sets_is_kept(monkeypatch) -> None:
    monkeypatch.setenv(EVENT_BATCH_SIZE, "0")  # an operator turning batches off
    defs()
    assert os.environ[EVENT_BATCH_SIZE] == "0"
