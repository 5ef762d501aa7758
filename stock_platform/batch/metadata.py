"""The batch's Dagster metadata: one way to write the run summary (`summary_metadata`) and one way to read it back
(`read_summary`), per-company metadata, and the table's shape in Dagster's standard keys (`dagster/column_schema`,
`dagster/row_count`), so the UI shows columns, types, descriptions and row counts.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pyarrow as pa

from stock_platform.batch.frames import FrameStats
from stock_platform.batch.schema import TABLE_COLUMNS
from stock_platform.batch.spool import PREVIEW_ROWS, SpooledFile
from stock_platform.batch.summary import SUMMARY_METADATA_KEY, Commit, RunSummary, TableState
from stock_platform.resources.s3 import S3Object, SourceBucket

COLUMN_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(c.name, str(c.arrow_type), description=c.description) for c in TABLE_COLUMNS]
)


def summary_metadata(summary: RunSummary, bucket: SourceBucket) -> dict[str, Any]:
    """The summary as metadata: the whole of it under one key (what readers parse), and the headline figures as
    plain entries for the UI."""
    rows = summary.rows
    headline: dict[str, Any] = {
        "companies_in_run": len(summary.companies),
        "companies_processed": len(summary.processed),
        "rows_read": rows.read,
        "rows_valid": rows.valid,
        "rows_rejected": rows.rejected,
        "duplicates_dropped": rows.duplicates,
        "committed": summary.commit is not None,
        "rows_committed": summary.committed_rows,
        "companies_committed": len(summary.commit.companies) if summary.commit else 0,
        "companies_no_longer_listed": len(summary.stale.names),
    }
    if summary.table is not None:
        headline["table_rows"] = summary.table.rows
        headline["table_version"] = summary.table.version
    if summary.rejects_uri:
        headline["rejects"] = dg.MetadataValue.url(bucket.link_for_uri(summary.rejects_uri))
    for phase, seconds in summary.phases.items():
        headline[f"seconds_{phase}"] = seconds
    return {**headline, SUMMARY_METADATA_KEY: dg.MetadataValue.json(summary.to_json())}


def read_summary(metadata: Mapping[str, dg.MetadataValue]) -> RunSummary | None:
    value = metadata.get(SUMMARY_METADATA_KEY)
    if value is None:
        return None
    data = value.value
    if not isinstance(data, Mapping):
        raise TypeError(f"{SUMMARY_METADATA_KEY} holds {type(data).__name__}, not a summary")
    return RunSummary.from_json(data)


PREVIEW_DECIMALS = 4  # prices have four decimals; the derived percentages are rounded for display only


def _shown(value: object) -> int | float | str | bool | None:
    if isinstance(value, float):
        return round(value, PREVIEW_DECIMALS)
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return str(value)


def _cell(value: object) -> str:
    shown = _shown(value)
    return "" if shown is None else str(shown)


def preview(table: pa.Table) -> dg.MarkdownMetadataValue:
    """A frame's first rows as a Markdown table, numbers rounded for display (the frame and the table keep every
    digit). Markdown, not a table value: that one carries the whole column schema again in every event, and a
    run records one event per company."""
    head = table.slice(0, PREVIEW_ROWS).to_pylist()
    names = table.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row[n]) for n in names) + " |" for row in head]
    return dg.MetadataValue.md("\n".join(lines))


def _dates(stats: FrameStats) -> dict[str, str]:
    if stats.min_date is None or stats.max_date is None:
        return {}
    return {"min_date": str(stats.min_date), "max_date": str(stats.max_date)}


def frame_metadata(
    bucket: SourceBucket, source: S3Object, result: SpooledFile, rejects_uri: str | None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "status": result.status,
        "rows_read": result.rows_read,
        "rows_loaded": result.rows_loaded,
        "rows_rejected": result.rows_rejected,
        "duplicates_dropped": result.duplicates,
        "source": dg.MetadataValue.url(bucket.link(source.key)),
        "source_etag": source.etag,
        **_dates(result.stats),
    }
    if result.reason:
        metadata["reason"] = result.reason
    if rejects_uri:
        metadata["rejects"] = dg.MetadataValue.url(bucket.link_for_uri(rejects_uri))
    if result.status != "rejected":
        metadata["frame"] = dg.MetadataValue.url(bucket.link(bucket.processed_key(result.company)))
        metadata["dagster/row_count"] = result.rows_loaded
    if result.rows_loaded:
        metadata["preview"] = preview(result.head)
    return metadata


COMMITTED_COMPANIES_KEY = "committed_companies"  # the table materialization's list, what readers parse


def table_metadata(commit: Commit, frames: Mapping[str, FrameStats], table: TableState | None) -> dict[str, Any]:
    """The table's materialization: what the run's transaction changed, each company it committed (rows, first
    and last day: what a partition per company used to say), and the table as it stood after the run."""
    lines = ["| company | rows | first day | last day |", "|---|---|---|---|"]
    for company in commit.companies:
        stats = frames[company]  # every committed company's frame was described: a missing one is a bug, not a gap
        lines.append(f"| {company} | {stats.rows} | {_cell(stats.min_date)} | {_cell(stats.max_date)} |")
    metadata: dict[str, Any] = {
        "companies_committed": len(commit.companies),
        "rows_inserted": commit.rows_inserted,
        "rows_updated": commit.rows_updated,
        "rows_deleted": commit.rows_deleted,
        "rows_unchanged": commit.rows_unchanged,
        "table_version": commit.version,
        "companies": dg.MetadataValue.md("\n".join(lines)),
        COMMITTED_COMPANIES_KEY: dg.MetadataValue.json(list(commit.companies)),
    }
    if commit.pruned:
        metadata["companies_pruned"] = dg.MetadataValue.json(list(commit.pruned))
    if table is not None:
        metadata["dagster/row_count"] = table.rows
        metadata["companies_in_table"] = table.companies
        if table.min_date and table.max_date:
            metadata["min_date"], metadata["max_date"] = table.min_date, table.max_date
    return metadata
