"""The text of a run's notification: a pure function of what the run did (what a trader reads in e-mail)."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SUBJECT_LIMIT = 100  # SNS: ASCII, at most 100 characters
ERROR_LINES = 8


@dataclass(frozen=True)
class RunFacts:
    run_id: str
    job_name: str
    status: str  # SUCCESS, FAILURE or CANCELED
    trigger: str
    duration_s: float | None = None
    summary: Mapping[str, Any] = field(default_factory=dict)  # historical_stock_data_csv's metadata
    failed_step: str | None = None
    error: str | None = None
    failed_checks: Sequence[str] = ()
    run_url: str | None = None


@dataclass(frozen=True)
class Notification:
    subject: str
    body: str
    attributes: dict[str, str]


def subject_for(prefix: str, success: bool) -> str:
    """`<prefix>_Pipeline_Success|Failure`, printable ASCII, at most 100 characters (SNS's limit)."""
    suffix = "_Pipeline_Success" if success else "_Pipeline_Failure"
    clean = re.sub(r"[^\x20-\x7e]", "", prefix).strip() or "stock_platform"
    return clean[: SUBJECT_LIMIT - len(suffix)] + suffix


def format_notification(facts: RunFacts, prefix: str) -> Notification:
    """The e-mail a person reads: what ran, why, what it did, and on failure where and why it failed."""
    success = facts.status == "SUCCESS"
    s = facts.summary
    details = s.get("summary") or {}
    outcome = {"SUCCESS": "succeeded", "FAILURE": "FAILED", "CANCELED": "was CANCELED (reported as a failure)"}
    lines = [f"Run {facts.run_id} of {facts.job_name} {outcome.get(facts.status, facts.status)}."]
    if facts.duration_s is not None:
        lines.append(f"Duration: {facts.duration_s:.1f} s")
    lines.append(f"Triggered by: {facts.trigger}")
    if facts.run_url:
        lines.append(f"Run in the Dagster UI: {facts.run_url}")
    if s:
        lines += [
            "",
            f"Companies in the run: {s.get('companies_in_run', 0)}: loaded {s.get('companies_loaded', 0)}, "
            f"empty {s.get('companies_empty', 0)}, rejected whole {s.get('companies_rejected', 0)}, "
            f"unchanged since their last load {s.get('companies_unchanged', 0)}; "
            f"listed but missing {s.get('companies_missing', 0)}",
            f"Rows: read {s.get('rows_read', 0)}, loaded {s.get('rows_loaded', 0)}, rejected {s.get('rows_rejected', 0)}, "
            f"duplicates dropped {s.get('duplicates_dropped', 0)}",
            f"Table {s.get('table', '')}: {s.get('table_rows', 0)} rows, {s.get('table_companies', 0)} companies",
        ]
        for label, key in (("Missing", "missing"), ("Empty", "empty"), ("Rejected whole", "rejected")):
            if details.get(key):
                lines.append(f"{label}: {', '.join(details[key])}")
        if s.get("rejects"):
            lines.append(f"Rejected rows: {s['rejects']}")
        if s.get("path"):
            lines.append(f"Output CSV: {s['path']}" + ("" if s.get("regenerated", True) else " (unchanged)"))
    elif success:
        lines += ["", "The run recorded no batch summary."]
    if facts.failed_checks:
        lines += ["", "Failed checks: " + ", ".join(facts.failed_checks)]
    if not success:
        lines += ["", f"Failed step: {facts.failed_step or '(none: the run failed before any step ran)'}"]
        if facts.error:
            error_lines = facts.error.strip().splitlines()
            lines += ["Error:", *("  " + line for line in error_lines[:ERROR_LINES])]
            if len(error_lines) > ERROR_LINES:
                lines.append(f"  ... ({len(error_lines) - ERROR_LINES} more lines in the run's logs)")
    return Notification(
        subject=subject_for(prefix, success),
        body="\n".join(lines) + "\n",
        attributes={"status": facts.status, "job": facts.job_name},
    )
