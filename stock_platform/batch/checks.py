"""Asset checks: one assertion each, with the offending keys (capped) and counts as evidence in metadata.

They are evaluated inside the steps that produce the data (the batch step is one multi-asset, and a separate check
step would be skipped whenever a run records its materializations explicitly), from the pure findings in
warehouse.py and reporting.py. ERROR checks stop bad data: a batch whose rejected-row share is above the threshold
fails before the table is touched.
"""

import dagster as dg

from stock_platform.batch.keys import COMPANY_STOCK_PRICES, HISTORICAL_STOCKS_DATA, TOP_COMPANIES
from stock_platform.batch.warehouse import Finding

# check name -> (severity, what passing means, key of its finding in warehouse.quality_findings)
TABLE_CHECKS: dict[str, tuple[dg.AssetCheckSeverity, str, str]] = {
    "has_unique_keys": (dg.AssetCheckSeverity.ERROR, "No two rows share (company_name, stock_date).", "unique_keys"),
    "rows_match_loaded_frames": (
        dg.AssetCheckSeverity.ERROR,
        "Every company has exactly as many rows as the frame it was last loaded from (the load ledger).",
        "rows_match_frames",
    ),
    "has_consistent_ohlc": (
        dg.AssetCheckSeverity.WARN,
        "low <= open, close <= high and prices are positive (suspicious rows are kept; this names them).",
        "ohlc",
    ),
    "has_non_negative_volume": (dg.AssetCheckSeverity.ERROR, "volume_traded >= 0 on every row.", "volume"),
    "has_plausible_dates": (dg.AssetCheckSeverity.ERROR, "No date is in the future or before 1900.", "dates"),
}

REJECTED_SHARE_CHECK = "rejected_share_below_threshold"
LISTED_PRESENT_CHECK = "every_listed_company_has_a_file"

TABLE_CHECK_SPECS = [
    dg.AssetCheckSpec(name, asset=HISTORICAL_STOCKS_DATA, description=description)
    for name, (_, description, _) in TABLE_CHECKS.items()
]
FRAME_CHECK_SPECS = [
    dg.AssetCheckSpec(
        REJECTED_SHARE_CHECK,
        asset=COMPANY_STOCK_PRICES,
        blocking=True,
        description="Rows rejected / rows read over the run's files stays at or below the configured threshold; "
        "above it the run fails before the table is touched.",
    )
]
LIST_CHECK_SPECS = [
    dg.AssetCheckSpec(LISTED_PRESENT_CHECK, asset=TOP_COMPANIES, description="Every listed company has a file under Stocks/.")
]


def table_check_results(findings: dict[str, Finding]) -> list[dg.AssetCheckResult]:
    results = []
    for name, (severity, _, key) in TABLE_CHECKS.items():
        finding = findings[key]
        results.append(
            dg.AssetCheckResult(
                asset_key=HISTORICAL_STOCKS_DATA,
                check_name=name,
                passed=finding.count == 0,
                severity=severity,
                metadata={"offending_rows": finding.count, "examples": dg.MetadataValue.json(finding.samples)},
            )
        )
    return results


def rejected_share_result(
    rows_read: int, rows_rejected: int, threshold: float, worst: dict[str, float]
) -> dg.AssetCheckResult:
    share = rows_rejected / rows_read if rows_read else 0.0
    return dg.AssetCheckResult(
        asset_key=COMPANY_STOCK_PRICES,
        check_name=REJECTED_SHARE_CHECK,
        passed=share <= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rejected_share": share,
            "threshold": threshold,
            "rows_read": rows_read,
            "rows_rejected": rows_rejected,
            "worst_companies": dg.MetadataValue.json(worst),
        },
    )


def listed_present_result(missing: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=TOP_COMPANIES,
        check_name=LISTED_PRESENT_CHECK,
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"missing": len(missing), "examples": dg.MetadataValue.json(missing[:20])},
    )
