"""The `company` dynamic partitions, and the one function that keeps them in sync with the batch."""

from collections.abc import Sequence

import dagster as dg

from stock_platform.batch.selection import Selection
from stock_platform.tags import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

COMPANY_PARTITIONS = "company"
company_partitions = dg.DynamicPartitionsDefinition(name=COMPANY_PARTITIONS)


def company_partition_requests(
    selection: Selection, existing: Sequence[str]
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """Requests that make the `company` partitions equal the listed companies whose files are present.

    The S3 sensor returns these in its SensorResult; `sync_company_partitions` (the CLI) applies them directly.
    """
    wanted = selection.companies
    current = set(existing)
    to_add = [c for c in wanted if c not in current]
    to_delete = sorted(current - set(wanted))
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if to_add:
        requests.append(company_partitions.build_add_request(to_add))
    if to_delete:
        requests.append(company_partitions.build_delete_request(to_delete))
    return requests


def partition_range_tags(keys: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover all of `keys` (in Dagster's order): a single-run backfill of them."""
    if not keys:
        return {}
    return {PARTITION_RANGE_START_TAG: keys[0], PARTITION_RANGE_END_TAG: keys[-1]}


def sync_company_partitions(instance: dg.DagsterInstance, selection: Selection) -> tuple[list[str], list[str]]:
    """Apply `company_partition_requests` to an instance; return (added, deleted)."""
    added: list[str] = []
    deleted: list[str] = []
    existing = instance.get_dynamic_partitions(COMPANY_PARTITIONS)
    for request in company_partition_requests(selection, existing):
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(COMPANY_PARTITIONS, list(request.partition_keys))
            added.extend(request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(COMPANY_PARTITIONS, key)
            deleted.extend(request.partition_keys)
    return added, deleted
