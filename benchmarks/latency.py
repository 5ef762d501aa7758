"""What a trader waits for, measured through the real `dagster-daemon` (sensors, queued run coordinator, a run
worker process per run) on the local stack, with a 5 s sensor interval:

- marker upload → `<prefix>_Pipeline_Success` in the SQS queue subscribed to the pipeline topic, each marker a
  full load (the target schema is emptied before each one, so every run loads every company);
- a quote put on the Kinesis stream → its price alert in the SQS queue subscribed to the alerts topic (each
  sample a company not alerted yet, priced 5 % over its last close).

Latency runs from just before the PUT (or PutRecord) to SQS's `SentTimestamp` of the message, so the polling of
the queue adds nothing. Before each sample the bench waits a random fraction of the interval, so the samples do
not all land at the same phase of the sensor's tick. Each sample is also split into stages by the event times of
the run it started (the first run of its job queued after the PUT): waiting for the sensor's tick, in the run
queue, the run worker's launch, the run itself, and (markers) the run-status sensor's message after the run.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import psycopg

from benchmarks.quotes import create_stream, create_topic_with_queue
from stock_platform.local.stack import (
    PROJECT_ROOT,
    create_notification_sink,
    stop_process_group,
    write_local_instance,
)

MARKER = "incoming/.SUCCESS"
PREFIX = "BENCH"
RUN_EVENTS = {
    dg.DagsterEventType.RUN_ENQUEUED: "enqueued",
    dg.DagsterEventType.RUN_STARTING: "launching",  # the queue daemon's hand-over to the launcher
    dg.DagsterEventType.RUN_START: "started",
    dg.DagsterEventType.RUN_SUCCESS: "succeeded",
}
JOBS = {"markers": "stock_batch_job", "alerts": "quote_ingest_job"}
STAGES = ("tick", "queue", "launch", "run", "message")  # of a sample's wait, in their order (`stages`)
HANG_S = 900.0  # only bounds a wait for something that never comes
STOP_TIMEOUT_S = 60.0


def next_message(queue_url: str, accept: Any, timeout: float = HANG_S) -> tuple[dict[str, Any], float]:
    """The first message `accept`s (others are dropped) and SQS's SentTimestamp of it, in epoch seconds."""
    sqs = boto3.client("sqs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        found = None
        for message in response.get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            if found is None and accept(message):
                found = (message, int(message["Attributes"]["SentTimestamp"]) / 1000)
        if found:
            return found
    raise TimeoutError(f"no message in {queue_url} within {timeout:.0f}s")


def wait_for_log(log: Path, needles: list[str], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if all(n in text for n in needles):
            return
        if process.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited: {text[-2000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"dagster-daemon never logged {needles}")


def reset_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')


def last_closes(dsn: str, schema: str, count: int) -> list[tuple[str, float]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f'SELECT DISTINCT ON (company_name) company_name, close_value FROM "{schema}".historical_stocks_data '
            "WHERE close_value > 0 ORDER BY company_name, stock_date DESC"
        ).fetchall()
    return [(str(c), float(v)) for c, v in rows[:count]]


def measure_latency(
    bucket: str, database_url: str, dsn: str, work: Path, markers: int, alerts: int, interval: int = 5
) -> dict[str, Any]:
    schema = f"latency_{uuid.uuid4().hex[:8]}"
    reset_schema(dsn, schema)
    home = work / f"home_latency_{uuid.uuid4().hex[:6]}"
    write_local_instance(home)
    sink = create_notification_sink(f"bench-pipeline-{uuid.uuid4().hex[:8]}")
    alerts_topic, alerts_queue = create_topic_with_queue(f"bench-alerts-{uuid.uuid4().hex[:8]}")
    stream = create_stream(f"bench-live-{uuid.uuid4().hex[:8]}", shards=2) if alerts else None
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "STOCK_PLATFORM_SOURCE_BUCKET": bucket,
        "STOCK_PLATFORM_DATABASE_URL": database_url,
        "STOCK_PLATFORM_DB_SCHEMA": schema,
        "STOCK_PLATFORM_SNS_TOPIC_ARN": sink.topic_arn,
        "STOCK_PLATFORM_ALERTS_TOPIC_ARN": alerts_topic,
        "STOCK_PLATFORM_NOTIFY_PREFIX": PREFIX,
        "STOCK_PLATFORM_SENSOR_INTERVAL_SECONDS": str(interval),
        "STOCK_PLATFORM_QUOTES_SENSOR_INTERVAL_SECONDS": str(interval),
        "STOCK_PLATFORM_DOWNLOAD_SCHEDULE_ENABLED": "false",
        **({"STOCK_PLATFORM_QUOTES_STREAM": stream.stream_name} if stream else {}),
    }
    for name in ("STOCK_PLATFORM_MONITORED_BUCKET", "STOCK_PLATFORM_MARKER_QUEUE_URL"):
        env.pop(name, None)
    log = work / f"daemon_{uuid.uuid4().hex[:6]}.log"
    command = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(PROJECT_ROOT / "workspace.yaml")]
    s3 = boto3.client("s3")
    outcome: dict[str, Any] = {"interval_s": interval, "markers": [], "alerts": []}
    with open(log, "wb") as out:
        daemon = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # The daemon's own start-up (loading the code location) is not what a marker waits for once it runs.
        needles = [f"sensor: {name}" for name in ("s3_marker_sensor", *(("quote_stream_sensor",) if stream else ()))]
        wait_for_log(log, needles, daemon)
        previous = None
        for i in range(markers):
            if i:
                reset_schema(dsn, schema)  # every marker's run is a full load
            time.sleep(random.uniform(0, interval))
            while True:  # S3's LastModified (part of the run key) has one-second resolution
                put = time.time()
                s3.put_object(Bucket=bucket, Key=MARKER, Body=b"")
                modified = s3.head_object(Bucket=bucket, Key=MARKER)["LastModified"]
                if previous is None or modified > previous:
                    previous = modified
                    break
                time.sleep(0.2)
            message, sent = next_message(
                sink.queue_url, lambda m: json.loads(m["Body"])["Subject"].startswith(f"{PREFIX}_Pipeline_")
            )
            subject = json.loads(message["Body"])["Subject"]
            outcome["markers"].append({"latency_s": round(sent - put, 3), "subject": subject, "put": put, "sent": sent})
            print(f"marker {i + 1}: {sent - put:.1f}s ({subject})", flush=True)
        if stream is not None:
            for i, (company, close) in enumerate(last_closes(dsn, schema, alerts)):
                time.sleep(random.uniform(0, interval))
                ticker = company.upper()
                quote = {
                    "ticker": ticker,
                    "event_time": datetime.now(timezone.utc).isoformat(),
                    "price": round(close * 1.05, 4),
                    "volume": 100,
                    "source": "bench",
                }
                put = time.time()
                stream.put_records([(json.dumps(quote).encode(), ticker)])
                _, sent = next_message(
                    alerts_queue,
                    lambda m, t=ticker: (
                        m.get("MessageAttributes", {}).get("ticker", {}).get("StringValue") in (t, "digest")
                    ),
                )
                outcome["alerts"].append(
                    {"latency_s": round(sent - put, 3), "ticker": ticker, "put": put, "sent": sent}
                )
                print(f"alert {i + 1}: {sent - put:.1f}s", flush=True)
    finally:
        stop_process_group(daemon, STOP_TIMEOUT_S)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = {kind: run_event_times(instance, job) for kind, job in JOBS.items()}
    outcome["marker_run_seconds"] = [
        round(r["succeeded"] - r["started"], 3) for r in runs["markers"] if "started" in r and "succeeded" in r
    ]
    for kind in JOBS:
        for sample in outcome[kind]:
            sample["stages"] = stages(sample["put"], sample["sent"], runs[kind])
    return outcome


def run_event_times(instance: dg.DagsterInstance, job_name: str) -> list[dict[str, float]]:
    """Each run of the job: the times (epoch s) of its queue, launch and run events, in the order they were queued."""
    runs = []
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=job_name)):
        times = {
            RUN_EVENTS[entry.dagster_event_type]: entry.timestamp
            for entry in instance.all_logs(run.run_id, of_type=set(RUN_EVENTS))
            if entry.dagster_event_type is not None
        }
        if "enqueued" in times:
            runs.append(times)
    return sorted(runs, key=lambda times: times["enqueued"])


def stages(put: float, sent: float, runs: list[dict[str, float]]) -> dict[str, float] | None:
    """Where one sample's wait went, from the first run queued after its PUT (None when there is none, or the
    message came before that run started: then it was not that run's).

    tick: PUT → the sensor queued the run; queue: → the queue daemon dequeued it; launch: → the run worker began
    execution; run: → the message (alerts, published by the run) or the run's success (markers); message: the run's
    success → the run-status sensor's message (markers)."""
    run = next((r for r in runs if r["enqueued"] >= put), None)
    if run is None or not {"launching", "started"} <= run.keys() or sent < run["started"]:
        return None
    ran_until = min(sent, run.get("succeeded", sent))
    # Consecutive times from the PUT to the message: each stage is the gap between two of them.
    times = [put, run["enqueued"], run["launching"], run["started"], ran_until, sent]
    return {name: round(later - earlier, 3) for name, (earlier, later) in zip(STAGES, pairwise(times), strict=True)}
