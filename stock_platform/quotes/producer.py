"""Replay sample quotes into the Kinesis stream at a chosen rate, so the stack shows quotes arriving live.

    python -m stock_platform.quotes.producer --rate 20 [--count 1000] [--stream NAME] [--create]
        [--tickers AAPL,MSFT | --closes-from-db] [--replay quotes.jsonl] [--duplicates 0.05] [--seed 7]

Without --replay it generates a random walk per ticker, stamped with the current time, starting from each
ticker's last close in historical_stocks_data (--closes-from-db, STOCK_PLATFORM_DATABASE_URL) or from 100, with
an occasional jump of about 1.5 % so price alerts fire. --duplicates re-sends that share of records, as an
at-least-once producer would. The stream comes from --stream or STOCK_PLATFORM_QUOTES_STREAM; the endpoint is
boto3's (AWS_ENDPOINT_URL for the local stack).
"""

import argparse
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

from stock_platform.quotes.model import Quote, company_of_ticker, normalize_ticker
from stock_platform.quotes.settings import STREAM_ENV
from stock_platform.resources.kinesis import KinesisStream

DEFAULT_TICKERS = ("AAPL", "MSFT", "GE", "IBM")
BATCH = 500  # PutRecords' limit


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stock_platform.quotes.producer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, required=True, help="Records per second.")
    parser.add_argument("--count", type=int, default=0, help="Records to send; 0: until interrupted.")
    parser.add_argument("--stream", default=os.environ.get(STREAM_ENV), help=f"Stream name (default: ${STREAM_ENV}).")
    parser.add_argument("--create", action="store_true", help="Create the stream if it does not exist.")
    parser.add_argument("--shards", type=int, default=2, help="Shards of a stream created by --create.")
    parser.add_argument("--tickers", default="", help="Comma-separated tickers (default: AAPL,MSFT,GE,IBM).")
    parser.add_argument("--closes-from-db", action="store_true", help="Start each ticker at its last close.")
    parser.add_argument("--replay", help="A JSON-lines file of quote records, sent as they are, in order.")
    parser.add_argument("--duplicates", type=float, default=0.0, help="Share of records sent twice (0-1).")
    parser.add_argument("--seed", type=int, default=7, help="Random seed of the generated walk.")
    args = parser.parse_args(argv)
    if not args.stream:
        parser.error(f"give --stream or set {STREAM_ENV}")
    if args.rate <= 0 or not 0 <= args.duplicates <= 1:
        parser.error("--rate must be > 0 and --duplicates between 0 and 1")
    return args


def last_closes(tickers: Sequence[str]) -> dict[str, float]:
    """Each ticker's last close in historical_stocks_data, read through the platform's own resource."""
    from stock_platform.batch.schema import qualified_name  # noqa: PLC0415 - only with --closes-from-db
    from stock_platform.resources.postgres import PostgresResource  # noqa: PLC0415

    postgres = PostgresResource(
        url=os.environ["STOCK_PLATFORM_DATABASE_URL"],
        schema_name=os.environ.get("STOCK_PLATFORM_DB_SCHEMA", "public"),
        table=os.environ.get("STOCK_PLATFORM_TABLE", "historical_stocks_data"),
    )
    with postgres.connect() as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (qualified_name(postgres.schema_name, postgres.table),)
        ).fetchone()
        if not (exists and exists[0]):
            return {}  # nothing loaded yet (a fresh local stack): every ticker starts from 100
        rows = conn.execute(
            f"SELECT DISTINCT ON (company_name) company_name, close_value FROM "
            f"{qualified_name(postgres.schema_name, postgres.table)} "
            "WHERE company_name = ANY(%s) AND close_value > 0 ORDER BY company_name, stock_date DESC",
            ([company_of_ticker(t) for t in tickers],),
        ).fetchall()
    by_company = {str(r[0]): float(r[1]) for r in rows}
    return {t: by_company[company_of_ticker(t)] for t in tickers if company_of_ticker(t) in by_company}


def generated(tickers: Sequence[str], closes: dict[str, float], seed: int) -> Iterator[bytes]:
    """An endless random walk per ticker, stamped now; about one step in 40 jumps ~1.5 % (an alert)."""
    rng = random.Random(seed)
    prices = {t: closes.get(t, 100.0) for t in tickers}
    for ticker in itertools.cycle(tickers):
        step = rng.choice((-0.015, 0.015)) if rng.random() < 0.025 else rng.gauss(0, 0.001)
        prices[ticker] = round(max(0.01, prices[ticker] * (1 + step)), 4)
        quote = Quote(ticker, datetime.now(timezone.utc), prices[ticker], rng.randint(1, 5000), "producer")
        yield json.dumps(quote.to_json()).encode()


def replayed(path: str) -> Iterator[bytes]:
    with open(path, "rb") as lines:
        for line in lines:
            if line.strip():
                yield line.strip()


def partition_key(data: bytes) -> str:
    """The ticker, so one ticker's quotes stay in one shard and in order; the record itself when unreadable."""
    try:
        return str(json.loads(data)["ticker"])[:256] or "?"
    except (ValueError, KeyError, TypeError):
        return "unreadable"


def ensure_stream(stream: KinesisStream, shards: int) -> None:
    client = stream.get_client()
    try:
        client.create_stream(StreamName=stream.stream_name, ShardCount=shards)
        print(f"created stream {stream.stream_name} with {shards} shards", flush=True)
    except client.exceptions.ResourceInUseException:
        return
    client.get_waiter("stream_exists").wait(StreamName=stream.stream_name, WaiterConfig={"Delay": 1})


def send(stream: KinesisStream, records: Iterator[bytes], rate: float, count: int, duplicates: float) -> int:
    """Put records at `rate` per second (in batches of up to 500); return how many were put."""
    rng = random.Random(0)
    sent = 0
    started = time.monotonic()
    limit = count or sys.maxsize
    while sent < limit:
        size = max(1, min(BATCH, int(rate), limit - sent))
        batch = list(itertools.islice(records, size))
        if not batch:
            break
        batch += [r for r in batch if rng.random() < duplicates]
        put = stream.put_records([(data, partition_key(data)) for data in batch])
        sent += put
        print(f"{sent} records put to {stream.stream_name}", flush=True)
        # Pace to the rate: sleep until the moment this many records are due.
        time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    return sent


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stream = KinesisStream(stream_name=args.stream)
    if args.create:
        ensure_stream(stream, args.shards)
    if args.replay:
        records = replayed(args.replay)
    else:
        tickers = [normalize_ticker(t) for t in args.tickers.split(",") if t.strip()] or list(DEFAULT_TICKERS)
        closes = last_closes(tickers) if args.closes_from_db else {}
        records = generated(tickers, closes, args.seed)
    try:
        send(stream, records, args.rate, args.count, args.duplicates)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
