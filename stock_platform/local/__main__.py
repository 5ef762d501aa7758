"""`python -m stock_platform.local run|ui|stop`: the local entry points behind `make run`, `make ui`, `make stop`.

run:  reach the local stack (starting it if needed), upload what is missing of the deterministic sample batch,
      run the daily download of the last trading day from the fake price API, then the batch load of what it
      changed, on a persistent Dagster instance; print both reports and messages, exit 0 (non-zero if the load
      failed).
ui:   the same stack and sample, then `dg dev` (webserver + daemon) on it until interrupted.
stop: end the stack.

The stack is one moto server (S3, SNS, SQS, ...) that runs in the background between commands, so what a command
wrote can still be opened after it ends, and an embedded PostgreSQL whose data stays in `.local/pgdata`. Ctrl-C,
SIGTERM or SIGHUP stop what the command itself started (PostgreSQL, dg dev and its children) and exit with 128 +
the signal's number; moto keeps running with its state until `make stop`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import boto3

from stock_platform.local import sample
from stock_platform.local.fake_provider import FakeProvider, start_fake_provider
from stock_platform.local.stack import (
    LOCAL_DIR,
    PROJECT_ROOT,
    NotificationSink,
    create_notification_sink,
    local_stack,
    stop_local_stack,
    stop_process_group,
    write_local_instance,
)
from stock_platform.notices import silence_known_notices
from stock_platform.tags import MARKER_ETAG_TAG, MARKER_TAG

SOURCE_BUCKET = "stock-platform-source"
# How long dagster dev may take to shut its webserver, daemon and code servers down before they are killed.
DAGSTER_DEV_STOP_TIMEOUT_S = 60.0
# How long a run stopped midway may take to record its failure once the servers are down.
ABANDONED_RUN_TIMEOUT_S = 60.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
T = TypeVar("T")


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by the first stop signal: it unwinds like Ctrl-C, through every `finally`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _unwind_on_stop_signals() -> None:
    """Turn SIGTERM and SIGHUP, whose default is to end the process on the spot, into what Ctrl-C does.

    Only the first signal unwinds. Later ones (make passes its own SIGTERM on to us, a second Ctrl-C) are
    ignored, so they cannot cut the cleanup short and leave a server behind; every step of that cleanup is
    bounded and ends in SIGKILL.
    """
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            raise Stopped(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)


@dataclass(frozen=True)
class Prepared:
    batch: sample.SampleBatch
    sink: NotificationSink
    uploaded: int  # files of the sample that were not in the bucket yet
    provider: FakeProvider  # the local price API the daily download fetches from


# The sample's special files get bad answers from the fake price API (each a failure mode a real provider has), so
# a download day leaves them as the batch demo needs them: missing, empty, header-only.
BAD_TICKERS = {sample.MISSING_COMPANY: "nodata", sample.EMPTY_COMPANY: "html", sample.HEADER_ONLY_COMPANY: "quota"}


def _prepare(env: dict[str, str], companies: int, listed: int) -> Prepared:
    os.environ.update(env)
    os.environ.setdefault("STOCK_PLATFORM_SOURCE_BUCKET", SOURCE_BUCKET)
    # Links in the UI and the reports open the objects on the local endpoint, which keeps running (make stop).
    os.environ.setdefault("STOCK_PLATFORM_S3_BROWSE_URL", env["AWS_ENDPOINT_URL"])
    # One ASSET_MATERIALIZATION_PLANNED event per asset for a run over a partition range, instead of one per
    # partition: about 17 s of event writes saved on a 500-company batch (the production image sets it too).
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    sink = create_notification_sink()
    os.environ["STOCK_PLATFORM_SNS_TOPIC_ARN"] = sink.topic_arn
    os.environ.setdefault("DAGSTER_HOME", str(LOCAL_DIR / "dagster_home"))
    write_local_instance(os.environ["DAGSTER_HOME"])
    bucket = os.environ["STOCK_PLATFORM_SOURCE_BUCKET"]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    # Local only: the bucket answers a browser's unsigned GETs, so the links in the UI and the reports open. A
    # deployed bucket is private (deploy/cloudformation.yaml); its links go to the S3 console.
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_browsable(bucket)))
    batch = sample.generate(companies=companies, listed=listed)
    # The endpoint keeps its objects between commands: upload only the sample's files that are not there, so a
    # second make run neither undoes the days the downloads added nor reloads anything.
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    there = {o["Key"] for page in pages for o in page.get("Contents", [])}
    uploaded = []

    def put_if_missing(key: str, data: bytes) -> None:
        if key not in there:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            uploaded.append(key)

    sample.upload(batch, put_if_missing)
    provider = start_fake_provider(bad=BAD_TICKERS)
    os.environ.setdefault("STOCK_PLATFORM_PRICE_PROVIDER", "yahoo")
    os.environ["STOCK_PLATFORM_PRICE_BASE_URL"] = provider.base_url
    os.environ.setdefault("STOCK_PLATFORM_PRICE_REQUESTS_PER_SECOND", "200")  # a local fake: no provider's quota
    _write_env_file()
    return Prepared(batch, sink, len(uploaded), provider)


def _browsable(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LocalStackLinksOpenInABrowser",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }


def _write_env_file() -> None:
    """`.local/env.sh`: `source` it in another shell to point the dagster CLI at the running local stack."""
    names = sorted(n for n in os.environ if n.startswith(("STOCK_PLATFORM_", "AWS_")) or n == "DAGSTER_HOME")
    lines = [f"export {n}={shlex.quote(os.environ[n])}" for n in names]
    (LOCAL_DIR / "env.sh").write_text(
        "# Written by make run / make ui for the stack they started.\n" + "\n".join(lines) + "\n"
    )


def _in_background(work: Callable[[], T]) -> Future[T]:
    """Run `work` in a daemon thread; the main thread waits on the returned future.

    A run executed in the main thread gets Dagster's own SIGINT/SIGTERM handler, which waits for the run's
    step to return before the run ends, and a load waiting for the table's lock (another load holds it) may
    never return. In a background thread, Dagster leaves the signals to us: the main thread unwinds at once
    and stops the servers, which ends the wait. Daemon, so a run that outlives them cannot keep the process.
    """
    future: Future[T] = Future()

    def target() -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            future.set_exception(error)

    threading.Thread(target=target, name="batch-run", daemon=True).start()
    return future


def run(args: argparse.Namespace) -> int:
    # Only `run` needs the report, and it imports the whole platform: `ui` leaves that to dagster dev.
    from stock_platform.local.report import (  # noqa: PLC0415
        execute_batch,
        execute_download,
        last_trading_day,
        print_download,
        print_report,
    )

    batch_run = None
    try:
        with local_stack(database_url=os.environ.get("STOCK_PLATFORM_DATABASE_URL")) as env:
            t0 = time.monotonic()
            prepared = _prepare(env, args.companies, args.listed)
            batch, bucket = prepared.batch, os.environ["STOCK_PLATFORM_SOURCE_BUCKET"]
            print(
                f"Local stack: S3/SNS/SQS at {env['AWS_ENDPOINT_URL']} (moto, kept running until make stop); "
                f"sample batch of {len(batch.files)} files ({batch.total_bytes / 1e6:.1f} MB) in s3://{bucket}/, "
                f"{prepared.uploaded} objects uploaded now (the rest were there), in {time.monotonic() - t0:.1f}s"
            )
            day = last_trading_day()
            download = _in_background(lambda: execute_download(day)).result()
            print_download(download)
            _print_notification(prepared.sink, download.run_id)
            # The marker the download dropped is what starts the load (the marker sensor, in make ui and in
            # production); here the load runs at once, tagged with the marker as the sensor would tag it.
            tags = _marker_tags(download.marker_uri)
            batch_run = _in_background(lambda: execute_batch(force_reload=args.force_reload, tags=tags))
            outcome = batch_run.result()
            print_report(outcome)
            _print_notification(prepared.sink, outcome.run_id)
            print(
                f"\nThe local stack keeps its S3 objects and table: the extract and the rejects above open at "
                f"{env['AWS_ENDPOINT_URL']}/{bucket}/<key>; list or download rejects with "
                f"`stock-platform rejects --run {outcome.run_id}` after `source .local/env.sh`; "
                f"`make ui` shows this run; `make stop` ends the stack."
            )
            return 0 if outcome.success else 1
    finally:
        if batch_run is not None:
            # Stopped midway: with the servers down, what the run was waiting for has failed. Give it the time
            # to record its failure in the instance, so the run does not show as still running.
            wait([batch_run], timeout=ABANDONED_RUN_TIMEOUT_S)


def _print_notification(sink: NotificationSink, run_id: str) -> None:
    """The run's SNS message as the subscribed queue received it (messages of other runs are left alone)."""
    envelopes: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30  # published before the run returned: a bound on SQS delivery, not a pause
    while not envelopes and time.monotonic() < deadline:
        envelopes = [e for e in sink.receive(wait_seconds=1) if run_id in e.get("Message", "")]
    for envelope in envelopes:
        print(f"\nSNS notification delivered to {sink.queue_url} (subscribed to {sink.topic_arn}):")
        attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
        print(f"Subject: {envelope['Subject']}   attributes: {attributes}")
        print(envelope["Message"])


def _marker_tags(marker_uri: str | None) -> dict[str, str]:
    if marker_uri is None:
        print("\nNo Stocks/ file changed, so the download dropped no marker; the load below finds nothing new.")
        return {}
    bucket, key = marker_uri.removeprefix("s3://").split("/", 1)
    etag = boto3.client("s3").head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    print(f"\nMarker {marker_uri}: the load of the changed companies follows.")
    return {MARKER_TAG: marker_uri, MARKER_ETAG_TAG: etag}


def stop(args: argparse.Namespace) -> int:
    stopped = stop_local_stack(LOCAL_DIR)
    print("Stopped: " + "; ".join(stopped) if stopped else "Nothing of the local stack was running.")
    return 0


QUOTE_STREAM = "stock-quotes"
QUOTE_TICKERS = 4  # sample companies the local quote producer walks around their last close


def _quote_tickers(batch: sample.SampleBatch) -> list[str]:
    """Listed sample companies with ordinary files whose names are valid tickers (letters, digits, '.', '-')."""
    special = {sample.MISSING_COMPANY, sample.EMPTY_COMPANY, sample.HEADER_ONLY_COMPANY, sample.BAD_ROWS_COMPANY}
    companies = [entry.split(".")[0] for entry in batch.listed]
    return [c.upper() for c in companies if c not in special and re.fullmatch(r"[a-z0-9.-]+", c)][:QUOTE_TICKERS]


def ui(args: argparse.Namespace) -> int:
    with local_stack(database_url=os.environ.get("STOCK_PLATFORM_DATABASE_URL")) as env:
        prepared = _prepare(env, args.companies, args.listed)
        sink = prepared.sink
        # Intraday quotes: a Kinesis stream on the same endpoint, read by the quote sensor every 5 s, and price
        # alerts on a topic of their own with a queue subscribed, so a user sees them arrive.
        alerts = create_notification_sink("stock-platform-alerts")
        os.environ.setdefault("STOCK_PLATFORM_QUOTES_STREAM", QUOTE_STREAM)
        os.environ.setdefault("STOCK_PLATFORM_QUOTES_SENSOR_INTERVAL_SECONDS", "5")
        os.environ.setdefault("STOCK_PLATFORM_ALERTS_TOPIC_ARN", alerts.topic_arn)
        _write_env_file()
        tickers = ",".join(_quote_tickers(prepared.batch))
        print(
            f"Local stack ready (moto at {env['AWS_ENDPOINT_URL']}); pipeline messages go to {sink.topic_arn} and the "
            f"queue {sink.queue_url}; price alerts to {alerts.topic_arn} and the queue {alerts.queue_url}; the fake "
            f"price API is at {prepared.provider.base_url}; quotes for {tickers} stream into "
            f"{os.environ['STOCK_PLATFORM_QUOTES_STREAM']}; starting dg dev on port {args.port}"
        )
        os.environ.setdefault("STOCK_PLATFORM_UI_BASE_URL", f"http://127.0.0.1:{args.port}")
        workspace = str(PROJECT_ROOT / "workspace.yaml")
        # `dg dev` (what `dagster dev` is superseded by) on the local workspace file: the webserver and the daemon.
        dg = str(Path(sys.executable).parent / "dg")
        command = [dg, "dev", "-w", workspace, "--host", "127.0.0.1", "--port", str(args.port)]
        os.environ.setdefault("VIRTUAL_ENV", str(Path(sys.executable).parent.parent))
        producer_command = [
            sys.executable,
            "-m",
            "stock_platform.quotes.producer",
            "--create",
            "--rate",
            "2",
            "--closes-from-db",
            "--duplicates",
            "0.05",
            "--tickers",
            tickers,
        ]
        with open(LOCAL_DIR / "quote-producer.log", "ab") as producer_log:
            producer = subprocess.Popen(
                producer_command,
                env=os.environ.copy(),
                stdout=producer_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Its own session: a terminal's Ctrl-C reaches only us, and we stop dagster dev and then its whole
        # process group (code servers, run workers), whichever way we are stopped.
        process = subprocess.Popen(command, env=os.environ.copy(), cwd=PROJECT_ROOT, start_new_session=True)
        try:
            return process.wait()
        finally:
            stop_process_group(producer, timeout=10)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # dagster dev's own graceful shutdown
                with suppress(subprocess.TimeoutExpired):
                    process.wait(DAGSTER_DEV_STOP_TIMEOUT_S)
            stop_process_group(process, timeout=10)
            prepared.provider.stop()


def main(argv: list[str] | None = None) -> int:
    silence_known_notices()
    parser = argparse.ArgumentParser(prog="python -m stock_platform.local")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stop", help="end the local stack's background S3 endpoint and its PostgreSQL")
    for name in ("run", "ui"):
        p = sub.add_parser(name)
        p.add_argument("--companies", type=int, default=1000, help="company files to generate")
        p.add_argument("--listed", type=int, default=500, help="companies named in top_companies.txt")
        if name == "run":
            p.add_argument("--force-reload", action="store_true", help="reload companies whose files did not change")
        else:
            p.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    _unwind_on_stop_signals()
    try:
        return {"run": run, "ui": ui, "stop": stop}[args.command](args)
    except Stopped as stopped:
        print(
            f"\nStopped by {signal.Signals(stopped.signum).name}; what the command started is down (the S3 endpoint "
            "keeps running with its data until make stop).",
            file=sys.stderr,
        )
        return 128 + stopped.signum


if __name__ == "__main__":
    sys.exit(main())
