"""The batch's quality rules, each declared once (name, severity, what passing means, its SQL), and the policy
resource holding the thresholds they enforce. checks.py turns the rules into Dagster asset checks; warehouse.py
runs their SQL. Dagster-free except the policy resource.
"""

from dataclasses import dataclass
from enum import Enum

import dagster as dg
from pydantic import Field


class Severity(str, Enum):
    ERROR = "ERROR"
    WARN = "WARN"


@dataclass(frozen=True)
class Rule:
    name: str  # the asset check's name
    severity: Severity
    description: str  # what passing means, shown in the UI
    # SQL over the data table `t` (and the ledger `l` where named) marking an offending row; `%(today)s` is bound.
    predicate: str | None = None


# Table rules: evaluated against the table as it stands, after a load or on their own.
UNIQUE_KEYS = Rule("has_unique_keys", Severity.ERROR, "No two rows share (company_name, stock_date).")
ROWS_MATCH_LEDGER = Rule(
    "rows_match_loaded_frames",
    Severity.ERROR,
    "Every company has exactly as many rows as the frame it was last loaded from (the load ledger).",
)
CONSISTENT_OHLC = Rule(
    "has_consistent_ohlc",
    Severity.WARN,
    "low <= open, close <= high and prices are positive (suspicious rows are kept; this names them).",
    predicate="NOT (low_value <= open_value AND open_value <= high_value AND low_value <= close_value "
    "AND close_value <= high_value AND low_value > 0)",
)
NON_NEGATIVE_VOLUME = Rule(
    "has_non_negative_volume", Severity.ERROR, "volume_traded >= 0 on every row.", predicate="volume_traded < 0"
)
PLAUSIBLE_DATES = Rule(
    "has_plausible_dates",
    Severity.ERROR,
    "No date is in the future or before 1900.",
    predicate="stock_date > %(today)s OR stock_date < DATE '1900-01-01'",
)
TABLE_RULES: tuple[Rule, ...] = (UNIQUE_KEYS, ROWS_MATCH_LEDGER, CONSISTENT_OHLC, NON_NEGATIVE_VOLUME, PLAUSIBLE_DATES)

# Batch rules: evaluated on what a run read, before anything is written.
REJECTED_SHARE = Rule(
    "rejected_share_below_threshold",
    Severity.ERROR,
    "Rows rejected / rows read over the run's files stays at or below the configured threshold; above it the run "
    "fails before the frames or the table are touched.",
)
LISTED_PRESENT = Rule(
    "every_listed_company_has_a_file", Severity.WARN, "Every listed company has a file under Stocks/."
)


@dataclass(frozen=True)
class Finding:
    """What one rule found: how many rows (or companies) break it, and a few of their keys."""

    count: int
    samples: list[str]
    basis: str = "a scan of the table"  # how the count was established: the check's evidence says so

    @property
    def passed(self) -> bool:
        return self.count == 0


@dataclass(frozen=True)
class RejectedShare:
    """The rejected-row gate's evidence for one run."""

    rows_read: int
    rows_rejected: int
    threshold: float
    worst: dict[str, float]  # company -> its rejected share, the 20 worst

    @property
    def share(self) -> float:
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0

    @property
    def passed(self) -> bool:
        return self.share <= self.threshold


class QualityPolicy(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Thresholds the data-quality checks enforce."""

    max_rejected_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Largest share of a run's rows that may be rejected before the run fails without loading "
        "(STOCK_PLATFORM_MAX_REJECTED_SHARE).",
    )
    max_file_bytes: int = Field(
        default=64 * 1024 * 1024,
        description="Files larger than this are rejected whole without being downloaded (a daily file is < 1 MB).",
    )
