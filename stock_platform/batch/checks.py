"""The quality rules as Dagster asset checks: one assertion each, counts and up to 20 offending keys as evidence.

The checks are evaluated by the batch step (a subsettable multi-asset): after a load, and also in a run that
selects only the checks ("Execute" on the checks tab, or `dagster asset check`), which evaluates them against the
table as it stands. A separate check op would be skipped in every batch run, because the step records its
materializations explicitly rather than through outputs.
"""

from collections.abc import Mapping

import dagster as dg

from stock_platform.batch.keys import COMPANY_STOCK_PRICES, HISTORICAL_STOCKS_DATA, TOP_COMPANIES
from stock_platform.batch.quality import (
    LISTED_PRESENT,
    REJECTED_SHARE,
    TABLE_RULES,
    Finding,
    RejectedShare,
    Rule,
    Severity,
)

_SEVERITY = {Severity.ERROR: dg.AssetCheckSeverity.ERROR, Severity.WARN: dg.AssetCheckSeverity.WARN}
EXAMPLES_CAP = 20


def _spec(rule: Rule, asset: dg.AssetKey, blocking: bool = False) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(rule.name, asset=asset, description=rule.description, blocking=blocking)


TABLE_CHECK_SPECS = [_spec(rule, HISTORICAL_STOCKS_DATA) for rule in TABLE_RULES]
TABLE_CHECK_KEYS = frozenset(spec.key for spec in TABLE_CHECK_SPECS)
FRAME_CHECK_SPECS = [_spec(REJECTED_SHARE, COMPANY_STOCK_PRICES, blocking=True)]
FRAME_CHECK_KEY = FRAME_CHECK_SPECS[0].key
LIST_CHECK_SPECS = [_spec(LISTED_PRESENT, TOP_COMPANIES)]


def table_check_results(findings: Mapping[str, Finding]) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            asset_key=HISTORICAL_STOCKS_DATA,
            check_name=rule.name,
            passed=findings[rule.name].passed,
            severity=_SEVERITY[rule.severity],
            metadata={
                "offending_rows": findings[rule.name].count,
                "examples": dg.MetadataValue.json(findings[rule.name].samples[:EXAMPLES_CAP]),
                "basis": findings[rule.name].basis,
            },
        )
        for rule in TABLE_RULES
    ]


def rejected_share_result(gate: RejectedShare) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=COMPANY_STOCK_PRICES,
        check_name=REJECTED_SHARE.name,
        passed=gate.passed,
        severity=_SEVERITY[REJECTED_SHARE.severity],
        metadata={
            "rejected_share": gate.share,
            "threshold": gate.threshold,
            "rows_read": gate.rows_read,
            "rows_rejected": gate.rows_rejected,
            "worst_companies": dg.MetadataValue.json(gate.worst),
        },
    )


def listed_present_result(missing: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=TOP_COMPANIES,
        check_name=LISTED_PRESENT.name,
        passed=not missing,
        severity=_SEVERITY[LISTED_PRESENT.severity],
        metadata={"missing": len(missing), "examples": dg.MetadataValue.json(missing[:EXAMPLES_CAP])},
    )
