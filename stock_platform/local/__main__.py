"""`python -m stock_platform.local run|ui`: the two local entry points behind `make run` and `make ui`.

run: start the local stack, upload the deterministic sample batch, materialize the whole graph in one run
     on a persistent Dagster instance, print a report, exit 0 (non-zero if the run failed).
ui:  the same stack and sample, then `dagster dev` (webserver + daemon) on it until interrupted.

Ctrl-C, SIGTERM or SIGHUP stop everything either started (moto, PostgreSQL, dagster dev and its children) and
exit with 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, wait
from contextlib import suppress
from pathlib import Path
from types import FrameType
from typing import TypeVar

import boto3

from stock_platform.local import sample
from stock_platform.local.stack import (
    LOCAL_DIR,
    PROJECT_ROOT,
    NotificationSink,
    create_notification_sink,
    local_stack,
    stop_process_group,
    write_local_instance,
)

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


def _prepare(env: dict[str, str], companies: int, listed: int) -> tuple[sample.SampleBatch, NotificationSink]:
    os.environ.update(env)
    os.environ.setdefault("STOCK_PLATFORM_SOURCE_BUCKET", SOURCE_BUCKET)
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
    batch = sample.generate(companies=companies, listed=listed)
    sample.upload(batch, lambda key, data: s3.put_object(Bucket=bucket, Key=key, Body=data))
    _write_env_file()
    return batch, sink


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
    from stock_platform.local.report import execute_batch, print_report  # noqa: PLC0415

    batch_run = None
    try:
        with local_stack(database_url=os.environ.get("STOCK_PLATFORM_DATABASE_URL")) as env:
            t0 = time.monotonic()
            batch, sink = _prepare(env, args.companies, args.listed)
            print(
                f"Local stack: S3/SNS/SQS at {env['AWS_ENDPOINT_URL']} (moto), "
                f"sample batch of {len(batch.files)} files ({batch.total_bytes / 1e6:.1f} MB) uploaded "
                f"to s3://{os.environ['STOCK_PLATFORM_SOURCE_BUCKET']}/ in {time.monotonic() - t0:.1f}s"
            )
            batch_run = _in_background(lambda: execute_batch(force_reload=args.force_reload))
            outcome = batch_run.result()
            print_report(outcome)
            for envelope in sink.receive(wait_seconds=2):
                print(f"\nSNS notification delivered to {sink.queue_url} (subscribed to {sink.topic_arn}):")
                attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
                print(f"Subject: {envelope['Subject']}   attributes: {attributes}")
                print(envelope["Message"])
            return 0 if outcome.success else 1
    finally:
        if batch_run is not None:
            # Stopped midway: with the servers down, what the run was waiting for has failed. Give it the time
            # to record its failure in the instance, so the run does not show as still running.
            wait([batch_run], timeout=ABANDONED_RUN_TIMEOUT_S)


def ui(args: argparse.Namespace) -> int:
    with local_stack(database_url=os.environ.get("STOCK_PLATFORM_DATABASE_URL")) as env:
        _, sink = _prepare(env, args.companies, args.listed)
        print(
            f"Local stack ready (moto at {env['AWS_ENDPOINT_URL']}); notifications go to {sink.topic_arn} and the "
            f"queue {sink.queue_url}; starting dagster dev on port {args.port}"
        )
        os.environ.setdefault("STOCK_PLATFORM_UI_BASE_URL", f"http://127.0.0.1:{args.port}")
        workspace = str(PROJECT_ROOT / "workspace.yaml")
        # `dg dev` (what `dagster dev` is superseded by) on the local workspace file: the webserver and the daemon.
        dg = str(Path(sys.executable).parent / "dg")
        command = [dg, "dev", "-w", workspace, "--host", "127.0.0.1", "--port", str(args.port)]
        os.environ.setdefault("VIRTUAL_ENV", str(Path(sys.executable).parent.parent))
        # Its own session: a terminal's Ctrl-C reaches only us, and we stop dagster dev and then its whole
        # process group (code servers, run workers), whichever way we are stopped.
        process = subprocess.Popen(command, env=os.environ.copy(), cwd=PROJECT_ROOT, start_new_session=True)
        try:
            return process.wait()
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # dagster dev's own graceful shutdown
                with suppress(subprocess.TimeoutExpired):
                    process.wait(DAGSTER_DEV_STOP_TIMEOUT_S)
            stop_process_group(process, timeout=10)


def main(argv: list[str] | None = None) -> int:
    # Dev-console noise, not news to a user running the local stack: Dagster's beta notice for observable
    # source assets and platformdirs' note about XDG_RUNTIME_DIR in containers.
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set.*")
    parser = argparse.ArgumentParser(prog="python -m stock_platform.local")
    sub = parser.add_subparsers(dest="command", required=True)
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
        return run(args) if args.command == "run" else ui(args)
    except Stopped as stop:
        print(f"\nStopped by {signal.Signals(stop.signum).name}; the local stack is down.", file=sys.stderr)
        return 128 + stop.signum


if __name__ == "__main__":
    sys.exit(main())
