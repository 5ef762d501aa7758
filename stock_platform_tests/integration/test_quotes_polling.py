"""The polling intake through the ingest job: a fake price source, the watchlist from the company list, the
same path as the stream (monthly log, lake), and a source that fails for one ticker."""

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg
import pytest

from stock_platform.quotes.definitions import build_quote_defs
from stock_platform.quotes.sensors import ingest_run_config
from stock_platform.settings import Settings

pytestmark = pytest.mark.integration

NOW = datetime(2024, 3, 4, 15, 5, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Latest:
    ticker: str
    time: datetime
    price: float
    volume: int | None
    source: str


class FakePriceSource(dg.ConfigurableResource):
    """Answers every ticker but one with a fixed price; the price source's `fetch_latest` shape."""

    failing: str = "BADR"

    def fetch_latest(self, ticker: str) -> Latest:
        if ticker.upper() == self.failing:
            raise RuntimeError(f"No latest price for {ticker}: quota exceeded")
        return Latest(ticker.upper(), NOW, 100.0 + len(ticker), 1000, "fake")


def test_a_poll_run_logs_the_watchlist_once_per_event_time(stack, instance) -> None:
    stack.put("CompanyNames/top_companies.txt", b"'aapl.us.csv', 'MSFT.us.txt',\n\"badr.us.txt\"")
    settings = Settings.from_environment()
    defs = dg.Definitions.merge(
        build_quote_defs(settings),
        dg.Definitions(resources={**settings.resources(), "price_source": FakePriceSource()}),
    )
    job = defs.resolve_job_def("quote_ingest_job")
    for _ in range(2):  # the price source answers the same latest price twice: logged once
        result = job.execute_in_process(
            run_config=ingest_run_config(poll=True), partition_key="202403", instance=instance
        )
        assert result.success
    rows = list(csv.DictReader(io.StringIO(stack.get("Quotes/202403.csv").decode())))
    assert [(r["ticker"], r["event_time"], r["price"], r["source"]) for r in rows] == [
        ("AAPL", "2024-03-04T15:05:00.000000Z", "104.0", "fake"),
        ("MSFT", "2024-03-04T15:05:00.000000Z", "104.0", "fake"),
    ]
    # Each poll run writes its own part per ticker (named after the run); the daily compaction merges them.
    run_ids = {r.run_id for r in instance.get_runs()}
    parts = stack.keys("Lake/quotes/date=2024-03-04/")
    assert len(parts) == 4 and {k.rsplit("part-", 1)[1].removesuffix(".parquet") for k in parts} == run_ids
    events = instance.fetch_materializations(dg.AssetKey("quote_month_log"), limit=10).records
    assert len(events) == 1  # the second run added nothing, so it recorded no materialization
    metadata = events[0].asset_materialization.metadata
    assert metadata["quotes_added"].value == 2 and metadata["rejected_records"].value == 1
