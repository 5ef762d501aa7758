"""`raw_stock_files_observation_sensor`: the raw files' data versions (their ETags) recorded as they change.

Without observations the UI shows `raw_stock_files` as never observed, and cannot tell which companies changed
since their last load. The sensor lists the source files (one paginated listing, as a batch does) and records an
observation for each company whose ETag differs from the one it last recorded, in the same `SensorResult`; an
unchanged bucket records nothing. The ETags it last recorded are its cursor (about 45 bytes per company), so a
reset cursor re-observes every company once.
"""

import json

import dagster as dg

from stock_platform.batch.keys import RAW_STOCK_FILES
from stock_platform.batch.partitions import COMPANY_PARTITIONS
from stock_platform.batch.sources import CompanyListError, read_batch
from stock_platform.resources.s3 import SourceBucket
from stock_platform.runtime import daemon_min_interval
from stock_platform.tags import DATA_VERSION_TAG


def changed_versions(current: dict[str, str], previous: dict[str, str]) -> dict[str, str]:
    """The companies whose version is new or differs from `previous`, with their current version. Pure."""
    return {company: version for company, version in sorted(current.items()) if previous.get(company) != version}


def build_observation_sensor(
    minimum_interval_seconds: int, default_status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    @dg.sensor(
        name="raw_stock_files_observation_sensor",
        minimum_interval_seconds=daemon_min_interval(minimum_interval_seconds),
        default_status=default_status,
        description=(
            "Records the ETag of each listed company's raw file as raw_stock_files' data version when it changes, "
            "so the UI shows which companies changed since their last load."
        ),
    )
    def raw_stock_files_observation_sensor(
        context: dg.SensorEvaluationContext, bucket: SourceBucket
    ) -> dg.SensorResult:
        # No list (yet), or one that names nothing: nothing to observe. The batch run a marker starts fails on it
        # and says so; the sensor does not report it a second time.
        if not bucket.exists(bucket.company_list_key):
            return dg.SensorResult(skip_reason=f"No company list at {bucket.uri(bucket.company_list_key)}")
        try:
            batch = read_batch(bucket)
        except CompanyListError as error:
            return dg.SensorResult(skip_reason=str(error))
        current = {c: s.etag for c in batch.selection.companies if (s := batch.source_of(c)) is not None}
        previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        changed = changed_versions(current, previous)
        if not changed:
            cursor = json.dumps(current, separators=(",", ":"), sort_keys=True)  # equal, less the files gone
            return dg.SensorResult(skip_reason=f"None of {len(current)} raw files changed", cursor=cursor)
        known = set(context.instance.get_dynamic_partitions(COMPANY_PARTITIONS))
        observations = [
            dg.AssetObservation(asset_key=RAW_STOCK_FILES, partition=company, tags={DATA_VERSION_TAG: etag})
            for company, etag in changed.items()
            if company in known  # a company gets its partition from the marker trigger or `sync-partitions`
        ]
        # Only what was recorded is remembered: a company still without a partition is observed once it has one.
        recorded = {o.partition for o in observations if o.partition is not None}
        kept = {c: v for c, v in current.items() if c in recorded or previous.get(c) == v}
        context.log.info(f"{len(observations)} raw files changed: {', '.join(sorted(recorded)[:20])}")
        return dg.SensorResult(
            asset_events=observations, cursor=json.dumps(kept, separators=(",", ":"), sort_keys=True)
        )

    return raw_stock_files_observation_sensor
