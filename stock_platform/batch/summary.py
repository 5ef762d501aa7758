"""What a run did, in numbers and words: per-company metadata and the batch summary. Pure, no Dagster.

The same summary feeds the Output CSV's metadata, the `make run` report and (later) the SNS message, so the
three always agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from stock_platform.batch.transforms import ParsedFile

# Statuses a company can end a run with.
# MISSING_FILE: a company partition of the run whose file is gone or that is no longer listed.
LOADED, EMPTY, REJECTED, UNCHANGED, MISSING_FILE = "loaded", "empty", "rejected", "unchanged", "missing_file"
# How many company names a summary lists per status (metadata and e-mail stay readable at 1,000 companies).
LIST_CAP = 50


def preview_markdown(table: pa.Table, rows: int = 5) -> str:
    """The first rows as a Markdown table (for the UI)."""
    head = table.slice(0, rows).to_pylist()
    columns = table.column_names
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in head:
        lines.append("| " + " | ".join("" if row[c] is None else str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def company_counts(parsed: ParsedFile) -> dict[str, int]:
    return {
        "rows_read": parsed.rows_read,
        "rows_loaded": parsed.rows_loaded,
        "rows_rejected": parsed.rows_rejected,
        "duplicates_dropped": parsed.duplicates,
    }


def date_range(table: pa.Table) -> tuple[str, str] | None:
    if not table.num_rows:
        return None
    dates = table.column("stock_date")
    return str(dates[0].as_py()), str(dates[-1].as_py())


@dataclass
class BatchSummary:
    """Totals over the companies of one run."""

    statuses: dict[str, str] = field(default_factory=dict)  # company -> status
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    duplicates_dropped: int = 0
    missing: tuple[str, ...] = ()  # list entries with no file
    rejects_uris: list[str] = field(default_factory=list)
    companies_in_run: int = 0
    load_seconds: float | None = None  # the table load's transaction, when this run loaded the table

    def add(self, company: str, status: str, counts: Mapping[str, int], rejects_uri: str | None = None) -> None:
        self.statuses[company] = status
        self.rows_read += counts.get("rows_read", 0)
        self.rows_loaded += counts.get("rows_loaded", 0)
        self.rows_rejected += counts.get("rows_rejected", 0)
        self.duplicates_dropped += counts.get("duplicates_dropped", 0)
        if rejects_uri:
            self.rejects_uris.append(rejects_uri)

    def companies_with(self, status: str) -> list[str]:
        return sorted(c for c, s in self.statuses.items() if s == status)

    @property
    def status_counts(self) -> Counter[str]:
        return Counter(self.statuses.values())

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_rejected + self.duplicates_dropped

    def as_metadata(self) -> dict[str, object]:
        counts = self.status_counts
        return {
            "companies_in_run": self.companies_in_run or len(self.statuses),
            "companies_processed": counts[LOADED] + counts[EMPTY] + counts[REJECTED],
            "companies_loaded": counts[LOADED],
            "companies_unchanged": counts[UNCHANGED],
            "companies_empty": counts[EMPTY],
            "companies_rejected": counts[REJECTED],
            "companies_missing": len(self.missing),
            "companies_missing_file": counts[MISSING_FILE],
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "duplicates_dropped": self.duplicates_dropped,
            **({"table_load_seconds": self.load_seconds} if self.load_seconds is not None else {}),
        }

    def details(self) -> dict[str, object]:
        """Company names per status (capped at LIST_CAP each), for metadata and notifications."""
        names = {status: self.companies_with(status) for status in (EMPTY, REJECTED, MISSING_FILE)}
        names["missing"] = sorted(self.missing)
        return {
            **{status: companies[:LIST_CAP] for status, companies in names.items()},
            "reconciles": self.reconciles,
        }


def root_error(error: object) -> str:
    """The first error in a Dagster SerializableErrorInfo chain that is not Dagster's own wrapper.

    Dagster wraps a step's exception in DagsterExecutionStepExecutionError; a reader wants the exception the
    platform raised (which may itself name the object it was working on and quote its own cause).
    """
    current = error
    while current is not None and str(getattr(current, "cls_name", "")).startswith("Dagster") and getattr(current, "cause", None):
        current = current.cause
    return str(getattr(current, "message", current)).strip()
