"""What the UI's staleness view reads: the raw files' data versions, observed as they change, and a company list
whose re-materialization keeps its data version when nothing changed (so a no-change run marks nothing "Unsynced").

Against moto's HTTP server and a real PostgreSQL, through the `stock-platform` CLI and the sensor's own tick.
"""

import dagster as dg
import pytest

from stock_platform.batch.keys import COMPANY_STOCK_PRICES, RAW_STOCK_FILES, TOP_COMPANIES
from stock_platform.batch.observation import changed_versions
from stock_platform.cli import main
from stock_platform.definitions import defs
from stock_platform.tags import DATA_VERSION_TAG

pytestmark = pytest.mark.integration
HEADER = b"Date,Open,High,Low,Close,Volume,OpenInt\n"
SENSOR = "raw_stock_files_observation_sensor"


def test_changed_versions_are_the_new_and_the_different() -> None:
    assert changed_versions({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "0", "d": "4"}) == {"b": "2", "c": "3"}
    assert changed_versions({"a": "1"}, {"a": "1"}) == {}


@pytest.fixture
def instance(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.get() as instance:
        yield instance


def put(stack, company: str, close: float) -> None:  # open 10, high 11, low 9
    stack.put(f"Stocks/{company}.us.txt", HEADER + f"2017-11-01,10,11,9,{close},100,0\n".encode())


def tick(instance: dg.DagsterInstance, cursor: str | None) -> tuple[list[dg.AssetObservation], str | None]:
    definitions = defs()
    sensor = definitions.resolve_sensor_def(SENSOR)
    resources = {"bucket": (definitions.resources or {})["bucket"]}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    for event in result.asset_events:  # what the daemon does with them
        instance.report_runless_asset_event(event)
    return list(result.asset_events), result.cursor


def observed(instance: dg.DagsterInstance) -> dict[str, str]:
    records = instance.fetch_observations(RAW_STOCK_FILES, limit=100).records
    latest: dict[str, str] = {}
    for record in reversed(records):  # oldest first, so the newest wins
        observation = record.asset_observation
        assert observation is not None and observation.partition is not None
        latest[observation.partition] = observation.tags[DATA_VERSION_TAG]
    return latest


def latest(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None) -> dg.EventLogRecord:
    filter_ = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None)
    return instance.fetch_materializations(filter_, limit=1).records[0]


def data_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str:
    materialization = latest(instance, key).asset_materialization
    assert materialization is not None
    return materialization.tags[DATA_VERSION_TAG]


def test_without_a_usable_list_there_is_nothing_to_observe(stack, instance) -> None:
    events, _ = tick(instance, None)  # the bucket is empty: skipped, not a failed tick (which the watchdog reports)
    assert events == []
    stack.put("CompanyNames/top_companies.txt", b"")
    assert tick(instance, None)[0] == []


def test_raw_files_are_observed_as_they_change_and_a_no_change_run_keeps_every_version(stack, instance) -> None:
    stack.put("CompanyNames/top_companies.txt", b"'aapl.us.csv', 'msft.us.csv'")
    put(stack, "aapl", 10.5)
    put(stack, "msft", 10.25)
    assert main(["sync-partitions"]) == 0

    events, cursor = tick(instance, None)
    etags = {c: stack.s3.head_object(Bucket=stack.bucket, Key=f"Stocks/{c}.us.txt")["ETag"] for c in ("aapl", "msft")}
    assert observed(instance) == {c: etag.strip('"') for c, etag in etags.items()}
    assert len(events) == 2

    events, cursor = tick(instance, cursor)  # nothing changed: nothing recorded
    assert events == []

    assert main(["load"]) == 0
    frames = {c: latest(instance, COMPANY_STOCK_PRICES, c).storage_id for c in ("aapl", "msft")}
    listed = data_version(instance, TOP_COMPANIES)

    assert main(["load"]) == 0  # no change: the list is re-materialized with the same data version, no frame
    assert data_version(instance, TOP_COMPANIES) == listed
    assert {c: latest(instance, COMPANY_STOCK_PRICES, c).storage_id for c in ("aapl", "msft")} == frames
    # ... and the frames do not depend on the list, whose new materialization would otherwise make them "Unsynced"
    assert TOP_COMPANIES not in defs().resolve_asset_graph().get(COMPANY_STOCK_PRICES).parent_keys

    put(stack, "msft", 10.75)  # a new file for one company: observed, and only that one
    events, cursor = tick(instance, cursor)
    assert [e.partition for e in events] == ["msft"]
    assert observed(instance)["msft"] != observed(instance)["aapl"]
    assert main(["load"]) == 0
    assert latest(instance, COMPANY_STOCK_PRICES, "msft").storage_id != frames["msft"]
    assert latest(instance, COMPANY_STOCK_PRICES, "aapl").storage_id == frames["aapl"]
