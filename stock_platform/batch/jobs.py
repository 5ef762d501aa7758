"""Jobs: what a batch run materializes, and the table's checks on their own."""

import dagster as dg

from stock_platform.batch.assets import load_stock_batch
from stock_platform.batch.keys import HISTORICAL_STOCKS_DATA
from stock_platform.tags import TARGET_TAG

# The whole graph for the companies of the run: its `company` partition range (the sensor and the CLI target
# every partition, one run), or the companies named in the batch step's config (a hand-picked set in one run).
stock_batch_job = dg.define_asset_job(
    name="stock_batch_job",
    selection=dg.AssetSelection.assets(load_stock_batch),
    # dagster.yaml's run coordinator limits runs carrying this tag to one at a time.
    tags={TARGET_TAG: "historical_stocks_data"},
    description=(
        "Load a batch: resolve the company list, parse and validate the changed files, replace those companies' "
        "rows in PostgreSQL in one transaction, and rewrite the Output CSV."
    ),
)

# The table's checks against the table as it stands, without loading anything (also "Execute" on the checks tab).
table_checks_job = dg.define_asset_job(
    name="historical_stocks_data_checks_job",
    selection=dg.AssetSelection.checks_for_assets(HISTORICAL_STOCKS_DATA),
    description="Evaluate the table's quality checks against the table as it stands; changes nothing.",
)
