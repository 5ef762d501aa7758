"""The batch's quality policy: thresholds its checks enforce."""

import dagster as dg
from pydantic import Field


class QualityPolicy(dg.ConfigurableResource):
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
