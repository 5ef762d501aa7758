"""Jobs: what a batch run materializes."""

import dagster as dg

from stock_platform.batch.assets import load_stock_batch, top_companies

# The whole graph for the companies of the run: its `company` partition range (the sensor and `make run` target
# every partition, one run), or the companies named in the batch step's config (a hand-picked set in one run).
stock_batch_job = dg.define_asset_job(
    name="stock_batch_job",
    selection=dg.AssetSelection.assets(top_companies, load_stock_batch),
    # dagster.yaml's run coordinator limits runs carrying this tag to one at a time.
    tags={"stock_platform/target": "historical_stocks_data"},
    description=(
        "Load a batch: resolve the company list, parse and validate the changed files, replace those companies' "
        "rows in PostgreSQL in one transaction, and rewrite the Output CSV."
    ),
)
