"""One download: every watchlist ticker's range fetched in one request, normalised, landed, and one marker.

Dagster-free and typed: the asset calls `run_download` in its step, the AWS Lambda handler calls it in the Lambda,
and both report the same `DownloadResult` (JSON-serialisable, so the Lambda can hand it back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from stock_platform.batch.selection import is_valid_company, listed_companies
from stock_platform.batch.sources import decode_company_list
from stock_platform.downloads.landing import ConflictError, Landing, write_marker
from stock_platform.downloads.prices import MergeError, kaggle_csv, normalise
from stock_platform.downloads.providers import Answer, Unavailable

Fetch = Callable[[str, date, date], Answer]
REJECT_EXAMPLES = 3


class TickerStatus(str, Enum):
    DOWNLOADED = "downloaded"  # its Stocks/ file gained or corrected dates
    UNCHANGED = "unchanged"  # price data came back, and the file already held it
    UNAVAILABLE = "unavailable"  # no price data: the reason says why (quota, HTML page, no data, HTTP error...)
    REJECTED = "rejected"  # rows came back, and the row rules rejected every one


FAILED = (TickerStatus.UNAVAILABLE, TickerStatus.REJECTED)


@dataclass(frozen=True)
class DownloadRequest:
    days: tuple[str, ...]  # the trading days (partition keys) the run covers, in order
    run_id: str
    tickers: tuple[str, ...] | None = None  # None: the companies in the company list
    force: bool = False  # overwrite raw/ objects that already exist

    @property
    def first(self) -> date:
        return date.fromisoformat(self.days[0])

    @property
    def last(self) -> date:
        return date.fromisoformat(self.days[-1])


@dataclass(frozen=True)
class TickerOutcome:
    ticker: str
    status: TickerStatus
    reason: str | None = None
    file_name: str | None = None
    dates: tuple[str, ...] = ()  # dates with a valid row in the answer
    new_dates: tuple[str, ...] = ()
    corrected_dates: tuple[str, ...] = ()
    rows_rejected: int = 0
    reject_examples: tuple[str, ...] = ()  # "<line>: <reason>", the first few
    raw_written: int = 0
    raw_kept: int = 0  # raw/ objects that already existed (first write wins)

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass(frozen=True)
class DownloadResult:
    days: tuple[str, ...]
    run_id: str
    outcomes: tuple[TickerOutcome, ...]
    marker_key: str | None = None
    requests: int = 0

    @property
    def changed(self) -> list[str]:
        return [o.ticker for o in self.outcomes if o.status is TickerStatus.DOWNLOADED]

    @property
    def failed(self) -> list[TickerOutcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def all_failed(self) -> bool:
        return bool(self.outcomes) and all(o.failed for o in self.outcomes)

    @property
    def rows_new(self) -> int:
        return sum(len(o.new_dates) for o in self.outcomes)

    @property
    def rows_corrected(self) -> int:
        return sum(len(o.corrected_dates) for o in self.outcomes)

    @property
    def rows_rejected(self) -> int:
        return sum(o.rows_rejected for o in self.outcomes)

    @property
    def raw_objects_written(self) -> int:
        return sum(o.raw_written for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DownloadResult:
        tuples = ("dates", "new_dates", "corrected_dates", "reject_examples")
        outcomes = tuple(
            TickerOutcome(**{**o, "status": TickerStatus(o["status"]), **{k: tuple(o[k]) for k in tuples}})
            for o in data["outcomes"]
        )
        return cls(tuple(data["days"]), data["run_id"], outcomes, data.get("marker_key"), data.get("requests", 0))


@dataclass(frozen=True)
class MarkerTarget:
    client: Any
    bucket: str
    prefix: str = ""
    suffix: str = ".SUCCESS"

    def key(self, request: DownloadRequest) -> str:
        span = request.days[0] if len(request.days) == 1 else f"{request.days[0]}_{request.days[-1]}"
        return f"{self.prefix}downloads/{span}/{request.run_id}{self.suffix}"


def watchlist(configured: Iterable[str] | None, company_list: Callable[[], tuple[bytes, str]]) -> tuple[str, ...]:
    """The tickers to download: the configured ones, else the companies the batch's company list names."""
    if configured is not None:
        entries: Iterable[str] = configured
    else:
        data, uri = company_list()
        entries = decode_company_list(data, uri)
    return listed_companies(entries)


def run_download(
    request: DownloadRequest,
    fetch: Fetch,
    landing: Landing,
    tickers: Sequence[str],
    marker: MarkerTarget | None = None,
    concurrency: int = 16,
    requests: Callable[[], int] = lambda: 0,
) -> DownloadResult:
    """Download, land and mark; never raises for one ticker's problem (it becomes that ticker's outcome)."""
    files = landing.stock_files()

    def one(ticker: str) -> TickerOutcome:
        if not is_valid_company(ticker):
            return TickerOutcome(ticker, TickerStatus.UNAVAILABLE, "not a valid ticker name")
        names = files.get(ticker, [])
        if len(names) > 1:
            reason = f"several files in Stocks/ for it ({', '.join(sorted(names))}): remove all but one"
            return TickerOutcome(ticker, TickerStatus.UNAVAILABLE, reason)
        file_name = names[0] if names else f"{ticker}.us.txt"
        try:
            return _download_one(request, fetch, landing, ticker, file_name, listed=bool(names))
        except (ClientError, MergeError, ConflictError) as error:
            return TickerOutcome(ticker, TickerStatus.UNAVAILABLE, f"could not land: {error}", file_name)

    with ThreadPoolExecutor(max(1, min(concurrency, len(tickers) or 1))) as pool:
        outcomes = tuple(pool.map(one, tickers))
    result = DownloadResult(request.days, request.run_id, outcomes, requests=requests())
    if result.changed and marker is not None:
        key = write_marker(marker.client, marker.bucket, marker.key(request), result.changed, request.run_id)
        result = DownloadResult(request.days, request.run_id, outcomes, key, result.requests)
    return result


def _download_one(
    request: DownloadRequest, fetch: Fetch, landing: Landing, ticker: str, file_name: str, listed: bool
) -> TickerOutcome:
    answer = fetch(ticker, request.first, request.last)
    if isinstance(answer, Unavailable):
        return TickerOutcome(ticker, TickerStatus.UNAVAILABLE, answer.reason, file_name)
    normalised = normalise(ticker, answer.rows)
    examples = tuple(f"{r.line}: {r.reason}" for r in normalised.rejected[:REJECT_EXAMPLES])
    rejected = len(normalised.rejected)
    if not normalised.rows:
        if rejected:
            reason = f"all {rejected} rows rejected by the row rules, e.g. {examples[0]}"
            return TickerOutcome(
                ticker, TickerStatus.REJECTED, reason, file_name, rows_rejected=rejected, reject_examples=examples
            )
        return TickerOutcome(ticker, TickerStatus.UNAVAILABLE, "no prices for the days asked", file_name)
    written = kept = 0
    for day in sorted({r.date for r in normalised.rows}):
        if landing.land_raw(landing.raw_key(day, ticker), kaggle_csv(normalised.on(day)), request.force):
            written += 1
        else:
            kept += 1
    update = landing.update_stock_file(file_name, normalised.rows, listed=listed)
    merge = update.merge
    return TickerOutcome(
        ticker,
        TickerStatus.DOWNLOADED if merge.data is not None else TickerStatus.UNCHANGED,
        file_name=file_name,
        dates=tuple(r.date for r in normalised.rows),
        new_dates=merge.new_dates,
        corrected_dates=merge.corrected_dates,
        rows_rejected=rejected,
        reject_examples=examples,
        raw_written=written,
        raw_kept=kept,
    )
