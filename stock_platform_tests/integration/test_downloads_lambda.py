"""The serverless form, and what follows a download: the Lambda handler launched through Dagster Pipes, the
batch load the marker triggers, and the run's notification text.

moto cannot run Lambda code without Docker, so the handler runs in this process behind a boto3-Lambda-like client
that does what a synchronous `Invoke` with `LogType=Tail` does: pass the event, return the payload and the last
4 KB of the function's log (where dagster-pipes writes its messages).
"""

import base64
import contextlib
import io
import json
from datetime import date
from typing import Any

import dagster as dg
import numpy as np
import pytest

from stock_platform.batch.runs import run_batch
from stock_platform.definitions import defs
from stock_platform.downloads.assets import build_download_asset
from stock_platform.downloads.lambda_handler import handler
from stock_platform.downloads.serverless import DownloadLambda
from stock_platform.downloads.settings import DownloadSettings
from stock_platform.local import sample
from stock_platform.local.fake_provider import start_fake_provider
from stock_platform.notifications.messages import format_notification
from stock_platform.notifications.sensors import run_facts
from stock_platform.settings import Settings
from stock_platform_tests.integration.test_downloads_landing import DAY, download, markers

pytestmark = pytest.mark.integration
LOG_TAIL = 4096


class InProcessLambda:
    """A boto3 Lambda client whose `invoke` runs the download handler here (see the module docstring)."""

    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: str, LogType: str | None = None) -> dict:
        event = json.loads(Payload)
        self.invocations.append(event)
        log = io.StringIO()
        response: dict[str, Any] = {"StatusCode": 200}
        with contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            try:
                payload = handler(event, None)
            except Exception as error:  # noqa: BLE001 - Lambda reports an unhandled error this way
                payload = {"errorMessage": str(error), "errorType": type(error).__name__}
                response["FunctionError"] = "Unhandled"
        response["Payload"] = io.BytesIO(json.dumps(payload).encode())
        if LogType == "Tail":
            response["LogResult"] = base64.b64encode(log.getvalue()[-LOG_TAIL:].encode()).decode()
        return response


class InProcessDownloadLambda(DownloadLambda):
    def lambda_client(self) -> Any:
        return CLIENT


CLIENT = InProcessLambda()


@pytest.fixture
def fake(monkeypatch):
    provider = start_fake_provider(bad={"bquota": "quota"}, last_day=date(2026, 1, 9))
    monkeypatch.setenv("STOCK_PLATFORM_PRICE_PROVIDER", "stooq")
    monkeypatch.setenv("STOCK_PLATFORM_PRICE_BASE_URL", provider.base_url)
    monkeypatch.setenv("STOCK_PLATFORM_PRICE_REQUESTS_PER_SECOND", "200")
    yield provider
    provider.stop()


def test_the_lambda_form_downloads_and_reports_through_pipes(stack, fake, instance, monkeypatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_DOWNLOAD_TICKERS", "aapl, msft, bquota")
    settings = DownloadSettings.from_environment()
    resources = {
        **Settings.from_environment().resources(),
        "price_source": settings.price_source(),
        "download_lambda": InProcessDownloadLambda(function_name="stock-platform-downloader"),
    }
    result = dg.materialize([build_download_asset(settings)], resources=resources, partition_key=DAY, instance=instance)
    assert result.success
    assert CLIENT.invocations[-1]["days"] == [DAY] and "DAGSTER_PIPES_CONTEXT" in CLIENT.invocations[-1]
    meta = {k: v.value for k, v in result.asset_materializations_for_node("daily_stock_prices")[0].metadata.items()}
    assert meta["tickers_downloaded"] == 2 and meta["tickers_unavailable"] == 1
    reported = meta["lambda_reported"]
    assert reported["tickers_downloaded"] == 2 and reported["rows_new"] == 2 and reported["provider"] == "stooq"
    assert sorted(stack.keys("raw/")) == [f"raw/{DAY}/aapl.us.txt", f"raw/{DAY}/msft.us.txt"]
    assert len(markers(stack)) == 1


def test_the_batch_load_after_a_download_loads_exactly_the_changed_companies(stack, fake, instance) -> None:
    rng = np.random.default_rng(3)
    companies = ["aapl", "ge", "ibm", "msft"]
    for company in companies:
        stack.put(f"Stocks/{company}.us.txt", sample.company_csv(rng, 30, np.datetime64("2025-11-03")))
    stack.put("CompanyNames/top_companies.txt", ", ".join(f"'{c}.us.csv'" for c in companies).encode())
    first = run_batch(defs(), instance)
    assert first.success, first.error
    changed = ["ge", "msft"]

    downloaded = download(instance, tickers=changed)
    assert downloaded.success and len(markers(stack)) == 1
    second = run_batch(defs(), instance)
    assert second.success and second.summary is not None
    loaded = sorted(c for c, r in second.summary.companies.items() if r.status.processed)
    assert loaded == changed
    rows = stack.query("SELECT company_name, count(*) FROM {t} WHERE stock_date = %s GROUP BY 1", (DAY,))
    assert sorted(r[0] for r in rows) == changed


def test_the_download_run_s_notification_carries_its_report(stack, fake, instance) -> None:
    result = download(instance, tickers=("aapl", "bquota"))
    run = instance.get_run_by_id(result.run_id)
    body = format_notification(run_facts(instance, run, None), "stocks").body
    assert "Daily price download of 2026-01-09 from stooq: 2 tickers" in body
    assert "bquota: unavailable: quota exceeded: Exceeded the daily hits limit" in body
