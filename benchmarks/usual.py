"""The usual approach, as most published solutions to this task write it: read_csv per file, concat in the loop,
DataFrame.to_sql(if_exists="append")."""

import io
import time

import boto3
import pandas as pd
from sqlalchemy import create_engine

from stock_platform.batch.selection import parse_company_list, resolve_selection


def run_usual(bucket: str, sqlalchemy_url: str, schema: str, limit: int | None = None) -> dict:
    started = time.perf_counter()
    s3 = boto3.client("s3")
    entries = parse_company_list(
        s3.get_object(Bucket=bucket, Key="CompanyNames/top_companies.txt")["Body"].read().decode()
    )
    names = [
        o["Key"].split("/", 1)[1]
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="Stocks/")
        for o in p.get("Contents", [])
    ]
    files = list(resolve_selection(entries, names).files.items())
    total = len(files)
    files = files[:limit] if limit else files
    combined = pd.DataFrame()
    for company, name in files:
        body = s3.get_object(Bucket=bucket, Key=f"Stocks/{name}")["Body"].read()
        if not body.strip():
            continue
        df = pd.read_csv(io.BytesIO(body))
        if df.empty:
            continue
        for column in ("Open", "High", "Low", "Close"):  # the sample's bad rows would otherwise stop it
            df[column] = pd.to_numeric(df[column], errors="coerce")
        df["daily_percent_change"] = (df["Close"] - df["Open"]) / df["Open"] * 100
        df["value_change"] = df["Close"] - df["Open"]
        df["company_name"] = company
        combined = pd.concat([combined, df], ignore_index=True)
    combined = combined.drop(columns=["OpenInt"], errors="ignore")
    engine = create_engine(sqlalchemy_url)
    combined.to_sql("usual_stocks", engine, schema=schema, if_exists="append", index=False, chunksize=10_000)
    engine.dispose()
    return {"seconds": time.perf_counter() - started, "files": len(files), "files_total": total, "rows": len(combined)}
