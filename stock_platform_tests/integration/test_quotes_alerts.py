"""Price-move alerts end to end on moto's SNS and SQS and a real PostgreSQL: previous closes from
historical_stocks_data, claims in quote_alert_claims, messages filtered by subscription attributes, digests,
and no duplicate across retries, restarts, re-delivered quotes, concurrent runs, or a failed publish."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from typing import Any

import boto3
import dagster as dg
import pytest

from stock_platform.batch.schema import prepare_tables
from stock_platform.quotes.definitions import build_quote_defs
from stock_platform.quotes.model import Quote, encode_batch
from stock_platform.quotes.pipeline import IngestResult, ingest
from stock_platform.quotes.sensors import ingest_run_config, month_range_tags
from stock_platform.quotes.settings import IntradayConfig
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import SourceBucket
from stock_platform.resources.sns import SNSResource
from stock_platform.settings import Settings
from stock_platform_tests.faults import FlakyProxy

pytestmark = pytest.mark.integration

OPEN = datetime(2024, 3, 4, 14, 30, tzinfo=timezone.utc)  # Monday 09:30 in New York
FILTERS = {
    "up": {"direction": ["up"], "ticker": [{"anything-but": "digest"}]},
    "digest": {"ticker": ["digest"]},
    "big": {"move": [{"numeric": [">=", 2]}]},
}


def q(ticker: str, minutes: int, price: float) -> Quote:
    return Quote(ticker, OPEN + timedelta(minutes=minutes), price, 100, "test")


class Alerts:
    """A topic with one SQS queue per filter policy, and the stack's database with previous closes."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.sns = boto3.client("sns", endpoint_url=stack.endpoint)
        self.sqs = boto3.client("sqs", endpoint_url=stack.endpoint)
        self.topic = self.sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
        self.queues: dict[str, str] = {}
        for name, policy in FILTERS.items():
            url = self.sqs.create_queue(QueueName=f"{name}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.sns.subscribe(
                TopicArn=self.topic,
                Protocol="sqs",
                Endpoint=arn,
                Attributes={"FilterPolicy": json.dumps(policy), "RawMessageDelivery": "true"},
            )
            self.queues[name] = url
        self.postgres = PostgresResource(url=stack.database_url, schema_name=stack.schema)
        prepare_tables(self.postgres.engine(), stack.schema, stack.table)
        closes = [("aapl", "2024-02-29", 99.0), ("aapl", "2024-03-01", 100.0), ("msft", "2024-03-01", 400.0)]
        closes += [("ge", "2024-03-01", 50.0), ("ibm", "2024-03-01", 200.0)]
        for company, day, close in closes:
            stack.query(
                "INSERT INTO {t} (company_name, stock_date, close_value) VALUES (%s, %s, %s) RETURNING 1",
                (company, day, close),
            )

    def received(self, queue: str) -> list[dict[str, Any]]:
        """Everything in the queue now (moto delivers during Publish), removed as it is read."""
        messages = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queues[queue], MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if not batch:
                return messages
            for m in batch:
                self.sqs.delete_message(QueueUrl=self.queues[queue], ReceiptHandle=m["ReceiptHandle"])
                attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
                messages.append({"body": m["Body"], **attrs})

    def run(self, quotes: list[Quote], sns: SNSResource | None = None, batch: str = "b1") -> IngestResult:
        return ingest(
            quotes,
            bucket=SourceBucket(bucket=self.stack.bucket),
            postgres=self.postgres,
            intraday=IntradayConfig(),
            batch_id=batch,
            run_id=batch,
            alerts=sns or SNSResource(topic_arn=self.topic),
        )

    def claims(self) -> list[tuple]:
        return self.stack.query(
            "SELECT ticker, trading_day::text, direction, price, previous_close, status, message_id IS NOT NULL, "
            "attempts FROM {s}.quote_alert_claims ORDER BY ticker, direction"
        )


@pytest.fixture
def alerts(stack) -> Alerts:
    return Alerts(stack)


def test_one_move_alerts_once_whatever_happens_next(alerts: Alerts) -> None:
    result = alerts.run([q("AAPL", 0, 100.5), q("AAPL", 5, 101.5), q("MSFT", 5, 401.0)])
    (up,) = alerts.received("up")
    assert (up["ticker"], up["direction"], float(up["move"])) == ("AAPL", "up", 1.5)
    assert "vs close 100 on 2024-03-01" in up["body"]  # the last close before the day, not 2024-02-29's
    assert alerts.received("digest") == [] and alerts.received("big") == []
    assert alerts.claims() == [("AAPL", "2024-03-04", "up", 101.5, 100.0, "published", True, 1)]
    assert result.alerts.message_ids and result.alerts.claimed == result.alerts.published

    # The same batch retried, re-delivered in another batch, and a later, bigger move the same way: silence.
    alerts.run([q("AAPL", 0, 100.5), q("AAPL", 5, 101.5)])
    alerts.run([q("AAPL", 5, 101.5), q("AAPL", 30, 104.0)], batch="b2")
    assert alerts.received("up") == [] and alerts.received("big") == []
    assert len(alerts.claims()) == 1
    # The other direction the same day is a new alert.
    alerts.run([q("AAPL", 60, 98.0)], batch="b3")
    assert alerts.received("up") == [] and alerts.received("big") == []  # down 2 %: "move" >= 2 does not match
    assert [c[2] for c in alerts.claims()] == ["down", "up"]
    # A subscriber filtering numerically on the move gets the big ones only.
    alerts.run([q("GE", 61, 51.5)], batch="b4")
    assert [(m["ticker"], float(m["move"])) for m in alerts.received("big")] == [("GE", 3.0)]
    assert [m["ticker"] for m in alerts.received("up")] == ["GE"]


def test_many_moves_in_one_tick_are_one_digest(alerts: Alerts) -> None:
    alerts.run([q("AAPL", 0, 102.0), q("MSFT", 0, 390.0), q("GE", 1, 51.0), q("IBM", 2, 200.5)])
    (digest,) = alerts.received("digest")
    assert (digest["ticker"], digest["direction"], digest["tickers"]) == ("digest", "mixed", "AAPL,GE,MSFT")
    assert float(digest["move"]) == pytest.approx(-2.5)
    assert alerts.received("up") == [] and alerts.received("big") == []  # -2.5 is not >= 2
    assert [c[0] for c in alerts.claims()] == ["AAPL", "GE", "MSFT"]
    assert len({c[6] for c in alerts.claims()}) == 1


def test_a_failed_publish_stays_pending_and_the_next_run_sends_it(alerts: Alerts) -> None:
    with FlakyProxy(alerts.stack.endpoint, lambda method, path, n: 500) as proxy:
        broken = SNSResource(topic_arn=alerts.topic, endpoint_url=proxy.url, max_attempts=1)
        failed = alerts.run([q("AAPL", 0, 103.0)], sns=broken)
    assert failed.alert_errors and failed.alerts.still_pending == [("AAPL", date(2024, 3, 4), "up")]
    assert alerts.claims() == [("AAPL", "2024-03-04", "up", 103.0, 100.0, "pending", False, 1)]
    assert alerts.received("up") == []

    # A restart re-delivers the quote: the claim exists, so it is not claimed again, and the pending alert goes out.
    retried = alerts.run([q("AAPL", 0, 103.0), q("MSFT", 1, 400.0)], batch="b2")
    assert retried.alerts.claimed == [] and retried.alerts.published == [("AAPL", date(2024, 3, 4), "up")]
    assert [m["ticker"] for m in alerts.received("up")] == ["AAPL"]
    assert alerts.claims() == [("AAPL", "2024-03-04", "up", 103.0, 100.0, "published", True, 2)]
    alerts.run([q("AAPL", 0, 103.0)], batch="b3")
    assert alerts.received("up") == []


def test_concurrent_runs_over_the_same_quotes_alert_once(alerts: Alerts) -> None:
    quotes = [q("AAPL", 0, 101.0), q("GE", 0, 49.0)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: alerts.run(quotes, batch=f"c{i}"), range(4)))
    (digest,) = alerts.received("digest")
    assert digest["tickers"] == "AAPL,GE"
    assert [c[5] for c in alerts.claims()] == ["published", "published"]


def test_quotes_land_in_postgres_once(alerts: Alerts) -> None:
    run: dict[str, Any] = {
        "bucket": SourceBucket(bucket=alerts.stack.bucket),
        "postgres": alerts.postgres,
        "intraday": IntradayConfig(land_in_postgres=True),
        "run_id": None,
        "alerts": None,
    }
    first = ingest([q("AAPL", 0, 100.0), q("AAPL", 1, 100.1)], batch_id="l1", **run)
    second = ingest([q("AAPL", 1, 100.1), q("AAPL", 2, 100.2), q("AAPL", 2, 100.2)], batch_id="l2", **run)
    assert sum(first.landed_by_month.values()) == 2 and sum(second.landed_by_month.values()) == 1
    rows = alerts.stack.query("SELECT ticker, event_time, price FROM {s}.stock_quotes ORDER BY event_time")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("AAPL", OPEN + timedelta(minutes=m), p) for m, p in ((0, 100.0), (1, 100.1), (2, 100.2))
    ]


def test_the_ingest_job_alerts_and_fails_loudly_when_sns_refuses(alerts: Alerts, instance, monkeypatch) -> None:
    def run_job(sns_endpoint: str) -> dg.ExecuteInProcessResult:
        monkeypatch.setenv("STOCK_PLATFORM_ALERTS_TOPIC_ARN", alerts.topic)
        monkeypatch.setenv("STOCK_PLATFORM_SNS_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", sns_endpoint)  # boto3's per-service endpoint: SNS only
        settings = Settings.from_environment()
        resources = {**settings.resources(), "price_source": dg.ResourceDefinition.none_resource()}
        defs = dg.Definitions.merge(build_quote_defs(settings), dg.Definitions(resources=resources))
        return defs.resolve_job_def("quote_ingest_job").execute_in_process(
            run_config=ingest_run_config(staged_key="Staging/quotes/b1.json"),
            tags=month_range_tags(["202403"]),
            instance=instance,
            raise_on_error=False,
        )

    alerts.stack.put("Staging/quotes/b1.json", encode_batch([q("AAPL", 0, 102.0)]))
    with FlakyProxy(alerts.stack.endpoint, lambda method, path, n: 503) as proxy:
        failed = run_job(proxy.url)
    assert not failed.success
    assert "1 price alert(s) could not be published and stay pending" in str(failed.get_step_failure_events())
    assert [c[5] for c in alerts.claims()] == ["pending"]
    # The log was written all the same: the failure is about the alert only.
    assert alerts.stack.get("Quotes/202403.csv").count(b"AAPL") == 1

    assert run_job(alerts.stack.endpoint).success  # a retry of the same batch publishes the pending alert
    assert [m["ticker"] for m in alerts.received("up")] == ["AAPL"]
    assert [c[5] for c in alerts.claims()] == ["published"]
