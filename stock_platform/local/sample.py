"""A deterministic sample batch in the source layout, with the defects real batches have.

Default: 1,000 company files of ~2,000-2,500 daily rows (Kaggle layout `Date,Open,High,Low,Close,Volume,OpenInt`,
named `<ticker>.us.txt`), a top_companies.txt naming 500 of them the way the original did (one line of
single-quoted file names, with `.csv` where the files say `.txt`), plus: an empty listed file, a listed file with
bad rows, a header-only file, and a listed company with no file. Same seed, same bytes, same ETags.
"""

from __future__ import annotations

import io
import string
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

HEADER = "Date,Open,High,Low,Close,Volume,OpenInt\n"
MISSING_COMPANY = "zzzz_missing"
EMPTY_COMPANY = "empt"
HEADER_ONLY_COMPANY = "hdro"
BAD_ROWS_COMPANY = "badr"
# The defects put into BAD_ROWS_COMPANY's file, one row each (plus one duplicated date).
BAD_ROWS = (
    "2018-02-30,10.0,11.0,9.0,10.5,1000,0",  # not a date
    "2018-03-01,,11.0,9.0,10.5,1000,0",  # Open missing
    "2018-03-02,10.0,11.0,9.0,abc,1000,0",  # Close not a number
    "2018-03-05,10.0,11.0,9.0,10.5,-5,0",  # Volume negative
    "2018-03-06,10.0,11.0",  # too few fields
)


@dataclass
class SampleBatch:
    files: dict[str, bytes]  # file name -> content
    company_list: str
    listed: list[str] = field(default_factory=list)  # list entries (file names as written in the list)

    @property
    def total_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())


def _tickers(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list(string.ascii_lowercase))
    seen: set[str] = {MISSING_COMPANY, EMPTY_COMPANY, HEADER_ONLY_COMPANY, BAD_ROWS_COMPANY}
    out: list[str] = []
    while len(out) < n:
        ticker = "".join(rng.choice(letters, size=int(rng.integers(1, 6))))
        roll = rng.random()
        if roll < 0.04:
            ticker += "_" + "".join(rng.choice(letters, size=1))  # preferred shares, like abr_c
        elif roll < 0.06:
            ticker += "-ws"  # warrants, like tdw-ws
        if ticker not in seen:
            seen.add(ticker)
            out.append(ticker)
    return out


def company_csv(rng: np.random.Generator, rows: int, start: np.datetime64) -> bytes:
    """Realistic daily prices: a geometric random walk over business days, Kaggle's number format."""
    days = np.busday_offset(start, np.arange(rows), roll="forward")
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, rows))) * rng.uniform(0.5, 5.0)
    open_ = close * (1 + rng.normal(0, 0.01, rows))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, rows)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, rows)))
    volume = rng.integers(1_000, 5_000_000, rows)
    table = pa.table(
        {
            "Date": pa.array(days.astype("datetime64[D]")),
            "Open": np.round(open_, 4),
            "High": np.round(high, 4),
            "Low": np.round(low, 4),
            "Close": np.round(close, 4),
            "Volume": volume,
            "OpenInt": np.zeros(rows, dtype=np.int64),
        }
    )
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return HEADER.encode() + sink.getvalue()


def generate(
    companies: int = 1000, listed: int = 500, seed: int = 7, min_rows: int = 2000, max_rows: int = 2500
) -> SampleBatch:
    rng = np.random.default_rng(seed)
    tickers = _tickers(rng, companies)
    files: dict[str, bytes] = {}
    for ticker in tickers:
        rows = int(rng.integers(min_rows, max_rows + 1))
        start = np.datetime64("2008-01-01") + np.timedelta64(int(rng.integers(0, 400)), "D")
        files[f"{ticker}.us.txt"] = company_csv(rng, rows, start)

    good = company_csv(rng, 50, np.datetime64("2018-01-01")).decode().rstrip("\n").split("\n")
    duplicate = good[3]  # the same date again, later in the file: the later row wins
    files[f"{BAD_ROWS_COMPANY}.us.txt"] = ("\n".join(good + list(BAD_ROWS) + [duplicate]) + "\n").encode()
    files[f"{EMPTY_COMPANY}.us.txt"] = b""
    files[f"{HEADER_ONLY_COMPANY}.us.txt"] = HEADER.encode()

    chosen = list(rng.choice(tickers, size=min(listed, len(tickers)), replace=False))
    specials = [BAD_ROWS_COMPANY, EMPTY_COMPANY, HEADER_ONLY_COMPANY, MISSING_COMPANY]
    entries = [f"{t}.us.csv" for t in chosen[: max(listed - len(specials), 0)] + specials]
    company_list = ", ".join(f"'{e}'" for e in entries) + "\n"
    return SampleBatch(files=files, company_list=company_list, listed=entries)


def upload(
    batch: SampleBatch,
    put: Callable[[str, bytes], object],
    stocks_prefix: str = "Stocks/",
    company_list_key: str = "CompanyNames/top_companies.txt",
    threads: int = 16,
) -> None:
    """Upload with `put(key, data)` (a boto3 put_object wrapper), in parallel."""
    items = [(stocks_prefix + name, data) for name, data in batch.files.items()]
    items.append((company_list_key, batch.company_list.encode()))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda kv: put(*kv), items))
