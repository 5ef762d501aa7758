"""The text of a run's notification: a pure function of what the run did (what a trader reads in e-mail).

The batch numbers come from the run's typed summary (batch/summary.py): what was processed and what was committed
are always told apart, and after a rollback or a cancel the message says nothing was committed and gives the
table's actual row count.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from stock_platform.batch.summary import RunSummary, capped, describe

# Metadata key under which a pipeline other than the batch load (downloads, ...) records the lines its run's
# message should carry: the run's own account of what it did, written from what it committed.
REPORT_METADATA_KEY = "stock_platform/report"
SUBJECT_LIMIT = 100  # SNS: ASCII, at most 100 characters
ERROR_LINES = 8


class RunOutcome(str, Enum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELED = "CANCELED"


@dataclass(frozen=True)
class RunFacts:
    run_id: str
    job_name: str
    status: RunOutcome
    trigger: str
    duration_s: float | None = None
    summary: RunSummary | None = None
    failed_step: str | None = None
    error: str | None = None
    failed_checks: Sequence[str] = ()
    run_url: str | None = None
    # Companies whose rows the run recorded as committed (historical_stocks_data materializations): what a run that
    # stopped without a summary (canceled, its process killed) is known to have committed.
    committed_companies: Sequence[str] = ()
    # REPORT_METADATA_KEY texts of the run's materializations, in order (pipelines without a batch summary).
    reports: Sequence[str] = ()


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


_OUTCOME = {
    RunOutcome.SUCCESS: "succeeded",
    RunOutcome.FAILURE: "FAILED",
    RunOutcome.CANCELED: "was CANCELED (reported as a failure)",
}


def format_notification(facts: RunFacts, prefix: str) -> Notification:
    """The e-mail a person reads: what ran, why, what it did, and on failure where and why it failed."""
    success = facts.status is RunOutcome.SUCCESS
    lines = [f"Run {facts.run_id} of {facts.job_name} {_OUTCOME[facts.status]}."]
    if facts.duration_s is not None:
        lines.append(f"Duration: {facts.duration_s:.1f} s")
    lines.append(f"Triggered by: {facts.trigger}")
    if facts.run_url:
        lines.append(f"Run in the Dagster UI: {facts.run_url}")
    if facts.summary is not None:
        lines += ["", *describe(facts.summary)]
    elif facts.reports:
        for report in facts.reports:
            lines += ["", *report.strip().splitlines()]
    elif facts.committed_companies:
        lines += [
            "",
            f"The run recorded no batch summary, but it committed the rows of {len(facts.committed_companies)} "
            f"companies before it ended: {capped(facts.committed_companies)}",
        ]
    elif success:
        lines += ["", "The run recorded no batch summary."]
    else:
        lines += [
            "",
            "The run recorded no batch summary and no commit: a load is one transaction, so the table is as the "
            "last committed run left it.",
        ]
    if facts.failed_checks:
        lines += ["", "Failed checks: " + ", ".join(facts.failed_checks)]
    if not success:
        lines += ["", f"Failed step: {facts.failed_step or '(none: the run failed before any step ran)'}"]
        error = facts.summary.error if facts.summary is not None and facts.summary.error else facts.error
        if error:
            error_lines = error.strip().splitlines()
            lines += ["Error:", *("  " + line for line in error_lines[:ERROR_LINES])]
            if len(error_lines) > ERROR_LINES:
                lines.append(f"  ... ({len(error_lines) - ERROR_LINES} more lines in the run's logs)")
    return Notification(
        subject=subject_for(prefix, success),
        body="\n".join(lines) + "\n",
        attributes={"status": facts.status.value, "job": facts.job_name},
    )
