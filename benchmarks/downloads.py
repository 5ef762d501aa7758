"""Daily downloads: the platform's download run against a bare script, on the same local fake provider.

The fake provider runs in a process of its own (so neither side shares its interpreter) and is warmed up first
(it builds each ticker's series on the first request). Each ticker's `Stocks/` file holds a year of history
before the day, as on a real daily run. Per rep, on a fresh bucket:

- bare: one plain GET of the day's prices and one PUT of the answer per ticker, `concurrency` at a time;
- platform: `daily_download_job` for the day (`download_run.py`, its own process and Dagster instance) with no
  rate limit: judge the answer, land `raw/`, merge into `Stocks/` with IfMatch, the marker, the event log;
- platform with a rate limit of N requests/s: the same run, whose floor is tickers / N seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from benchmarks.children import run_child
from stock_platform.downloads.providers import Provider, daily_url
from stock_platform.local.fake_provider import FakeProviderState
from stock_platform.local.report import last_trading_day
from stock_platform.local.stack import free_port, stop_process_group, write_local_instance

PROVIDER = Provider.YAHOO
HISTORY_DAYS = 365
CONCURRENCY = 16  # the platform's default STOCK_PLATFORM_DOWNLOAD_CONCURRENCY; the bare script uses as many


class FakeProviderProcess:
    """`python -m stock_platform.local.fake_provider` on a free port, in its own process group."""

    def __init__(self, log: Path) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stock_platform.local.fake_provider", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.base_url}/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the fake provider did not start (see {log})") from None
                time.sleep(0.2)

    def stop(self) -> None:
        stop_process_group(self.process, 10.0)


def tickers_of(count: int) -> list[str]:
    return [f"d{i:03d}" for i in range(count)]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=20) as response:
        body: bytes = response.read()
        return body


def seed_bucket(bucket: str, tickers: list[str], day: date) -> None:
    """A fresh bucket whose `Stocks/` files hold each ticker's year before `day`, from the fake's own series."""
    state = FakeProviderState(last_day=day)
    s3 = boto3.client("s3", config=Config(max_pool_connections=CONCURRENCY + 4))
    s3.create_bucket(Bucket=bucket)

    def put(ticker: str) -> None:
        rows = state.rows(ticker, day - timedelta(days=HISTORY_DAYS), day - timedelta(days=1))
        lines = "".join(f"{d},{o},{h},{low},{c},{v},0\n" for d, o, h, low, c, v in rows)
        body = f"Date,Open,High,Low,Close,Volume,OpenInt\n{lines}".encode()
        s3.put_object(Bucket=bucket, Key=f"Stocks/{ticker}.us.txt", Body=body)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(put, tickers))


def empty_bucket(bucket: str) -> None:
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})
    s3.delete_bucket(Bucket=bucket)


def bare_download(base_url: str, bucket: str, tickers: list[str], day: date) -> dict[str, Any]:
    s3 = boto3.client("s3", config=Config(max_pool_connections=CONCURRENCY + 4))
    started = time.perf_counter()

    def pair(ticker: str) -> int:
        body = get(daily_url(PROVIDER, base_url, ticker, day, day, None))
        s3.put_object(Bucket=bucket, Key=f"bare/{day.isoformat()}/{ticker}.json", Body=body)
        return len(body)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        sizes = list(pool.map(pair, tickers))
    return {"seconds": time.perf_counter() - started, "pairs": len(sizes), "bytes": sum(sizes)}


def platform_download(work: Path, env: dict[str, str], day: date) -> dict[str, Any]:
    home = work / f"home_download_{uuid.uuid4().hex[:6]}"
    write_local_instance(home)
    args = [str(home), day.isoformat()]
    return run_child("benchmarks.download_run", args, {**env, "DAGSTER_HOME": str(home)}, "download run")


def measure_downloads(work: Path, count: int, rate: float, reps: int) -> dict[str, Any]:
    tickers = tickers_of(count)
    day = date.fromisoformat(last_trading_day())
    fake = FakeProviderProcess(work / "fake_provider.log")
    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:  # the fake builds each series once: not part of any timing
            list(pool.map(lambda t: get(daily_url(PROVIDER, fake.base_url, t, day, day, None)), tickers))
        env = {
            **os.environ,
            "STOCK_PLATFORM_PRICE_PROVIDER": PROVIDER.value,
            "STOCK_PLATFORM_PRICE_BASE_URL": fake.base_url,
            "STOCK_PLATFORM_DOWNLOAD_TICKERS": ",".join(tickers),
            "STOCK_PLATFORM_DOWNLOAD_SCHEDULE_ENABLED": "false",
            "STOCK_PLATFORM_DOWNLOAD_CONCURRENCY": str(CONCURRENCY),
        }
        for name in ("STOCK_PLATFORM_SNS_TOPIC_ARN", "STOCK_PLATFORM_MONITORED_BUCKET"):
            env.pop(name, None)
        bare, unlimited, limited = [], [], []
        for rep in range(reps):
            bucket = f"bench-dl-{uuid.uuid4().hex[:8]}"
            seed_bucket(bucket, tickers, day)
            try:
                bare.append(bare_download(fake.base_url, bucket, tickers, day))
                run_env = {**env, "STOCK_PLATFORM_SOURCE_BUCKET": bucket}
                unlimited.append(
                    platform_download(work, {**run_env, "STOCK_PLATFORM_PRICE_REQUESTS_PER_SECOND": "0"}, day)
                )
            finally:
                empty_bucket(bucket)
            if rate:
                bucket = f"bench-dl-{uuid.uuid4().hex[:8]}"
                seed_bucket(bucket, tickers, day)
                try:
                    run_env = {**env, "STOCK_PLATFORM_SOURCE_BUCKET": bucket}
                    limited.append(
                        platform_download(work, {**run_env, "STOCK_PLATFORM_PRICE_REQUESTS_PER_SECOND": str(rate)}, day)
                    )
                finally:
                    empty_bucket(bucket)
            limited_s = f", at {rate:g}/s {limited[-1]['run_seconds']:.1f}s" if rate else ""
            print(
                f"downloads rep {rep + 1}: bare {bare[-1]['seconds']:.1f}s, "
                f"platform {unlimited[-1]['run_seconds']:.1f}s{limited_s}",
                flush=True,
            )
    finally:
        fake.stop()
    return {
        "tickers": count,
        "day": day.isoformat(),
        "provider": PROVIDER.value,
        "concurrency": CONCURRENCY,
        "history_days": HISTORY_DAYS,
        "rate_limit": rate,
        "bare": bare,
        "platform": unlimited,
        "platform_rate_limited": limited,
    }
