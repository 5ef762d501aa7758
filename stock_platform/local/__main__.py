"""`python -m stock_platform.local run|ui`: the two local entry points behind `make run` and `make ui`.

run: start the local stack, upload the deterministic sample batch, materialize the whole graph in one run
     on a persistent Dagster instance, print a report, exit 0 (non-zero if the run failed).
ui:  the same stack and sample, then `dagster dev` (webserver + daemon) on it until interrupted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import warnings

import boto3

from stock_platform.local import sample
from stock_platform.local.stack import (
    LOCAL_DIR,
    PROJECT_ROOT,
    NotificationSink,
    create_notification_sink,
    local_stack,
    write_local_instance,
)

SOURCE_BUCKET = "stock-platform-source"


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
    (LOCAL_DIR / "env.sh").write_text("# Written by make run / make ui for the stack they started.\n" + "\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> int:
    from stock_platform.local.report import execute_batch, print_report

    with local_stack(database_url=os.environ.get("STOCK_PLATFORM_DATABASE_URL")) as env:
        t0 = time.monotonic()
        batch, sink = _prepare(env, args.companies, args.listed)
        print(
            f"Local stack: S3/SNS/SQS at {env['AWS_ENDPOINT_URL']} (moto), "
            f"sample batch of {len(batch.files)} files ({batch.total_bytes / 1e6:.1f} MB) uploaded "
            f"to s3://{os.environ['STOCK_PLATFORM_SOURCE_BUCKET']}/ in {time.monotonic() - t0:.1f}s"
        )
        outcome = execute_batch(force_reload=args.force_reload)
        print_report(outcome)
        for envelope in sink.receive(wait_seconds=2):
            print(f"\nSNS notification delivered to {sink.queue_url} (subscribed to {sink.topic_arn}):")
            attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
            print(f"Subject: {envelope['Subject']}   attributes: {attributes}")
            print(envelope["Message"])
        return 0 if outcome.success else 1


def ui(args: argparse.Namespace) -> int:
    with local_stack(database_url=os.environ.get("STOCK_PLATFORM_DATABASE_URL")) as env:
        _, sink = _prepare(env, args.companies, args.listed)
        print(
            f"Local stack ready (moto at {env['AWS_ENDPOINT_URL']}); notifications go to {sink.topic_arn} and the "
            f"queue {sink.queue_url}; starting dagster dev on port {args.port}"
        )
        os.environ.setdefault("STOCK_PLATFORM_UI_BASE_URL", f"http://127.0.0.1:{args.port}")
        command = [
            sys.executable, "-m", "dagster", "dev",
            "-w", str(PROJECT_ROOT / "workspace.yaml"),
            "-h", "127.0.0.1", "-p", str(args.port),
        ]
        try:
            return subprocess.call(command, env=os.environ.copy(), cwd=PROJECT_ROOT)
        except KeyboardInterrupt:
            return 0


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
    return run(args) if args.command == "run" else ui(args)


if __name__ == "__main__":
    sys.exit(main())
