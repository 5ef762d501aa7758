"""Intraday quotes: the platform's stream path against a bare consumer, on the same records of one moto stream.

Both read every record of the stream from TRIM_HORIZON. The bare script does GetRecords → de-duplicate on
(ticker, event time) → one CSV per month PUT to S3, in one process, nothing else. The platform does what its
daemon would: the stream sensor's tick function and the ingest job each tick requests (`quotes_run.py`, its own
process so its peak RSS is its own): monthly log, lake parts, alert claims and SNS messages, checks, event log.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import psycopg

from benchmarks.children import run_child
from stock_platform.batch.schema import prepare_tables
from stock_platform.local.stack import write_local_instance
from stock_platform.resources.kinesis import KinesisStream
from stock_platform.resources.postgres import PostgresResource

UTC = timezone.utc
DAY = date(2024, 3, 4)  # a Monday
PREVIOUS_DAY = date(2024, 3, 1)
SESSION_OPEN = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)  # 09:30 in New York
SESSION_SECONDS = 6.5 * 3600
TABLE = "historical_stocks_data"


def quote_records(count: int, tickers: int, duplicates: float = 0.02, seed: int = 11) -> list[tuple[bytes, str]]:
    """`count` records over one session: a random walk per ticker from a close of 100, re-sending `duplicates`
    of them as an at-least-once producer does; every tenth ticker jumps 1.5 % at midday, so alerts fire."""
    rng = random.Random(seed)
    names = [f"Q{i:03d}" for i in range(tickers)]
    distinct = max(int(count / (1 + duplicates)), 1)
    per_ticker = -(-distinct // tickers)
    step = SESSION_SECONDS / per_ticker
    prices = dict.fromkeys(names, 100.0)
    records: list[tuple[bytes, str]] = []
    for i in range(per_ticker):
        moment = SESSION_OPEN + timedelta(seconds=i * step)
        for k, name in enumerate(names):
            jump = 1.015 if i == per_ticker // 2 and k % 10 == 0 else 1.0
            prices[name] = round(prices[name] * jump * (1 + rng.gauss(0, 0.0004)), 4)
            body = {"ticker": name, "event_time": moment.isoformat(), "price": prices[name], "volume": 100}
            records.append((json.dumps({**body, "source": "bench"}).encode(), name))
    records = records[:distinct]
    while len(records) < count:
        records.append(records[rng.randrange(len(records))])
    return records


def bare_consume(stream_name: str, bucket: str, prefix: str) -> dict[str, Any]:
    """GetRecords on every shard to its tip → de-duplicate → one CSV per month, PUT."""
    started = time.perf_counter()
    kinesis, s3 = boto3.client("kinesis"), boto3.client("s3")
    seen: set[tuple[str, str]] = set()
    months: dict[str, list[tuple[str, str, float, int]]] = defaultdict(list)
    read = 0
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in response["Records"]:
                quote = json.loads(record["Data"])
                moment = datetime.fromisoformat(quote["event_time"]).astimezone(UTC)
                key = (quote["ticker"], moment.isoformat())
                read += 1
                if key not in seen:
                    seen.add(key)
                    months[moment.strftime("%Y%m")].append((key[1], key[0], quote["price"], quote["volume"]))
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    for month, rows in months.items():
        rows.sort()
        body = "ticker,event_time,price,volume\n" + "".join(f"{t},{m},{p},{v}\n" for m, t, p, v in rows)
        s3.put_object(Bucket=bucket, Key=f"{prefix}{month}.csv", Body=body.encode())
    return {"seconds": time.perf_counter() - started, "records_read": read, "quotes_written": len(seen)}


def platform_consume(home: Path, env: dict[str, str]) -> dict[str, Any]:
    return run_child("benchmarks.quotes_run", [str(home)], env, "quotes run")


def create_stream(name: str, shards: int) -> KinesisStream:
    client = boto3.client("kinesis")
    client.create_stream(StreamName=name, ShardCount=shards)
    deadline = time.monotonic() + 60
    while client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise RuntimeError(f"stream {name} never became active")
        time.sleep(0.2)
    return KinesisStream(stream_name=name)


def create_topic_with_queue(name: str) -> tuple[str, str]:
    """An SNS topic and an SQS queue subscribed to it with raw delivery: (topic ARN, queue URL)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


def drain_queue(queue_url: str) -> int:
    sqs, count = boto3.client("sqs"), 0
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        count += len(messages)
    return count


def measure_quotes(
    database_url: str, dsn: str, schema: str, work: Path, count: int, tickers: int, reps: int
) -> dict[str, Any]:
    """Put `count` records on a fresh stream once; per rep, the bare consumer and the platform each read all of
    them into a fresh bucket (the platform on a fresh Dagster instance and claims table)."""
    stream = create_stream(f"bench-quotes-{uuid.uuid4().hex[:8]}", shards=2)
    records = quote_records(count, tickers)
    distinct = len(set(records))
    put_started = time.perf_counter()
    stream.put_records(records)
    put_s = time.perf_counter() - put_started
    del records
    s3 = boto3.client("s3")
    bare, platform = [], []
    for rep in range(reps):
        bucket = f"bench-quotes-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        bare.append(bare_consume(stream.stream_name, bucket, "Bare/"))
        rep_schema = f"{schema}_{rep}"
        postgres = PostgresResource(url=database_url, schema_name=rep_schema)
        prepare_tables(postgres.engine(), rep_schema, TABLE)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f'INSERT INTO "{rep_schema}"."{TABLE}" (company_name, stock_date, close_value) '
                "SELECT 'q' || lpad(i::text, 3, '0'), %s, 100 FROM generate_series(0, %s) i",
                (PREVIOUS_DAY, tickers - 1),
            )
        topic, queue = create_topic_with_queue(f"bench-alerts-{uuid.uuid4().hex[:8]}")
        home = work / f"home_quotes_{uuid.uuid4().hex[:6]}"
        write_local_instance(home)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "STOCK_PLATFORM_SOURCE_BUCKET": bucket,
            "STOCK_PLATFORM_DATABASE_URL": database_url,
            "STOCK_PLATFORM_DB_SCHEMA": rep_schema,
            "STOCK_PLATFORM_QUOTES_STREAM": stream.stream_name,
            "STOCK_PLATFORM_ALERTS_TOPIC_ARN": topic,
        }
        env.pop("STOCK_PLATFORM_SNS_TOPIC_ARN", None)
        try:
            result = platform_consume(home, env)
            with psycopg.connect(dsn) as conn:
                row = conn.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE status = 'published') "
                    f'FROM "{rep_schema}".quote_alert_claims'
                ).fetchone()
            result["alerts_claimed"], result["alerts_published"] = row if row else (0, 0)
            result["alert_messages"] = drain_queue(queue)
            result["quotes_logged"] = sum(
                len(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().splitlines()) - 1
                for o in s3.list_objects_v2(Bucket=bucket, Prefix="Quotes/").get("Contents", [])
            )
            platform.append(result)
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{rep_schema}" CASCADE')
        print(
            f"quotes rep {rep + 1}: bare {bare[-1]['seconds']:.1f}s, platform {platform[-1]['seconds']:.1f}s "
            f"({platform[-1]['runs']} runs, {platform[-1]['peak_rss_mb']:.0f} MB)",
            flush=True,
        )
    return {
        "records": count,
        "distinct": distinct,
        "tickers": tickers,
        "put_seconds": round(put_s, 3),
        "bare": bare,
        "platform": platform,
    }
