"""The floor: the fastest straightforward script doing the platform's user-visible work, without Dagster.

Concurrent S3 GETs, pyarrow parsing with the same row rules (stock_platform.transforms is Dagster-free), rejects
written to S3, one transaction that deletes the companies' rows and COPYs the new ones into the typed table with
its primary key, then the Output CSV exported with COPY TO and PUT. No Parquet frames, no ledger, no checks,
no event log: that is the platform's extra work.

`run_pipelined` does the same work with its phases overlapped, the floor's shape with workers: the COPY takes each
file's rows as soon as a worker has parsed them, and the Output CSV is uploaded while COPY TO produces it. On a
machine with spare cores that is the practical limit of a run; on 2 CPUs the phases share them.
"""

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import boto3
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from botocore.config import Config

from stock_platform.batch.schema import COLUMN_NAMES, create_table_sql
from stock_platform.batch.selection import parse_company_list, resolve_selection
from stock_platform.batch.transforms import MEMORY_POOL, parse_stock_csv, rejects_to_csv
from stock_platform.resources.s3 import SourceBucket


def prices_to_csv(prices: pa.Table) -> bytes:
    """Rows in table column order, as COPY ... (FORMAT csv) reads them: what the floor (and the bare COPY) send.
    (The platform sends binary COPY, batch/pgbinary.py.)"""
    sink = io.BytesIO()
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    pacsv.write_csv(prices, sink, options, memory_pool=MEMORY_POOL)
    return sink.getvalue()


def _client(threads: int) -> Any:
    return boto3.client("s3", config=Config(max_pool_connections=threads + 4, retries={"mode": "standard"}))


def _files(s3: Any, bucket: str) -> dict[str, str]:
    """company -> file name under Stocks/, for the listed companies."""
    entries = parse_company_list(
        s3.get_object(Bucket=bucket, Key="CompanyNames/top_companies.txt")["Body"].read().decode()
    )
    names = [
        o["Key"].split("/", 1)[1]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="Stocks/", Delimiter="/")
        for o in page.get("Contents", [])
    ]
    return dict(resolve_selection(entries, names).files)


def run_floor(bucket: str, dsn: str, schema: str, table: str = "historical_stocks_data", threads: int = 16) -> dict:
    started = time.perf_counter()
    s3 = _client(threads)
    files = _files(s3, bucket)

    def work(item: tuple[str, str]):
        company, name = item
        return parse_stock_csv(s3.get_object(Bucket=bucket, Key=f"Stocks/{name}")["Body"].read(), company)

    with ThreadPoolExecutor(threads) as pool:
        parsed = list(pool.map(work, files.items()))
        list(
            pool.map(
                lambda p: s3.put_object(
                    Bucket=bucket, Key=f"Rejected/floor/{p.company}.csv", Body=rejects_to_csv(p.rejects)
                ),
                [p for p in parsed if p.rows_rejected],
            )
        )
    fetched = time.perf_counter()
    target = f'"{schema}"."{table}"'
    rows = 0
    with psycopg.connect(dsn) as conn:
        for statement in create_table_sql(schema, table):
            conn.execute(statement.encode())
        conn.execute(f"DELETE FROM {target} WHERE company_name = ANY(%s)", ([p.company for p in parsed],))
        with conn.cursor().copy(f"COPY {target} ({', '.join(COLUMN_NAMES)}) FROM STDIN (FORMAT csv)") as copy:
            for p in parsed:
                if p.status != "rejected" and p.rows_loaded:
                    copy.write(prices_to_csv(p.prices))
                    rows += p.rows_loaded
        conn.commit()
        loaded = time.perf_counter()
        sink = io.BytesIO()
        with conn.cursor().copy(
            f"COPY (SELECT * FROM {target} ORDER BY company_name, stock_date) TO STDOUT (FORMAT csv)"
        ) as copy:
            for chunk in copy:
                sink.write(chunk)
    s3.put_object(Bucket=bucket, Key="Output/floor.csv", Body=sink.getvalue())
    ended = time.perf_counter()
    return {
        "seconds": ended - started,
        "fetch_parse_seconds": fetched - started,
        "load_seconds": loaded - fetched,
        "output_seconds": ended - loaded,
        "rows": rows,
    }


def run_pipelined(bucket: str, dsn: str, schema: str, table: str = "historical_stocks_data", threads: int = 16) -> dict:
    """The floor's work, phases overlapped (see the module): the same rows, rejects and Output CSV."""
    started = time.perf_counter()
    s3 = _client(threads)
    files = _files(s3, bucket)
    target = f'"{schema}"."{table}"'

    def work(item: tuple[str, str]) -> tuple[int, bytes | None]:
        company, name = item
        parsed = parse_stock_csv(s3.get_object(Bucket=bucket, Key=f"Stocks/{name}")["Body"].read(), company)
        if parsed.rows_rejected:
            s3.put_object(Bucket=bucket, Key=f"Rejected/pipelined/{company}.csv", Body=rejects_to_csv(parsed.rejects))
        if parsed.status == "rejected" or not parsed.rows_loaded:
            return 0, None
        return parsed.rows_loaded, prices_to_csv(parsed.prices)

    rows = 0
    with psycopg.connect(dsn) as conn, ThreadPoolExecutor(threads) as pool:
        for statement in create_table_sql(schema, table):
            conn.execute(statement.encode())
        conn.execute(f"DELETE FROM {target} WHERE company_name = ANY(%s)", (list(files),))
        futures = [pool.submit(work, item) for item in files.items()]
        with conn.cursor().copy(f"COPY {target} ({', '.join(COLUMN_NAMES)}) FROM STDIN (FORMAT csv)") as copy:
            for future in as_completed(futures):
                loaded, csv_rows = future.result()
                if csv_rows is not None:
                    copy.write(csv_rows)
                    rows += loaded
        conn.commit()
        loaded_at = time.perf_counter()
        with conn.cursor().copy(
            f"COPY (SELECT * FROM {target} ORDER BY company_name, stock_date) TO STDOUT (FORMAT csv)"
        ) as copy:
            # The platform's streamed upload (boto3's multipart upload_fileobj), fed blocks as COPY TO sends rows.
            SourceBucket(bucket=bucket).upload_stream("Output/pipelined.csv", blocks(copy, 1 << 20), "text/csv")
    ended = time.perf_counter()
    return {
        "seconds": ended - started,
        "load_seconds": loaded_at - started,
        "output_seconds": ended - loaded_at,
        "rows": rows,
    }


def blocks(pieces: Any, size: int) -> Iterator[bytes]:
    """`pieces` (COPY TO's rows, one per message) joined into blocks of at least `size` bytes."""
    block = bytearray()
    for piece in pieces:
        block += piece
        if len(block) >= size:
            yield bytes(block)
            block.clear()
    if block:
        yield bytes(block)


def bare_copy(dsn: str, schema: str, csv_chunks: list[bytes], table: str = "bare_copy") -> dict:
    """COPY of already-transformed rows into an empty typed table with its primary key, alone."""
    target = f'"{schema}"."{table}"'
    with psycopg.connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {target}")
        statement = create_table_sql(schema, table)[1]
        conn.execute(statement.encode())
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY {target} ({', '.join(COLUMN_NAMES)}) FROM STDIN (FORMAT csv)") as copy:
            for chunk in csv_chunks:
                copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
        rows = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
        conn.execute(f"DROP TABLE {target}")
        conn.commit()
    return {"seconds": seconds, "rows": rows}
