"""What a download tells a person: per-ticker and per-day accounts, and the lines of the run's SNS message. Pure.

Every number comes from the `DownloadResult`, i.e. from what was written to S3 (new and corrected dates are
those of the Stocks/ writes that succeeded), never from what was asked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from stock_platform.batch.summary import capped
from stock_platform.downloads.run import DownloadResult, TickerOutcome, TickerStatus
from stock_platform.trading_days import CLOSED_DAYS

MAX_FAILURE_LINES = 10


@dataclass(frozen=True)
class DayCount:
    day: str
    tickers_with_prices: int
    rows_new: int
    rows_corrected: int


def span(days: tuple[str, ...]) -> str:
    if len(days) == 1:
        return days[0]
    return f"{days[0]} to {days[-1]} ({len(days)} trading days)"


def date_range(outcome: TickerOutcome) -> str:
    if not outcome.dates:
        return ""
    return outcome.dates[0] if len(outcome.dates) == 1 else f"{outcome.dates[0]} to {outcome.dates[-1]}"


def per_day(result: DownloadResult) -> list[DayCount]:
    with_prices: Counter[str] = Counter()
    new: Counter[str] = Counter()
    corrected: Counter[str] = Counter()
    for outcome in result.outcomes:
        with_prices.update(outcome.dates)
        new.update(outcome.new_dates)
        corrected.update(outcome.corrected_dates)
    days = sorted({*result.days, *with_prices})
    return [DayCount(d, with_prices[d], new[d], corrected[d]) for d in days]


def status_counts(result: DownloadResult) -> dict[str, int]:
    counts = Counter(o.status for o in result.outcomes)
    return {status.value: counts[status] for status in TickerStatus}


def report_lines(result: DownloadResult, source: str, marker_uri: str | None) -> list[str]:
    """The lines the run's <prefix>_Pipeline_Success|Failure message carries."""
    counts = status_counts(result)
    lines = [
        f"Daily price download of {span(result.days)} from {source}: {len(result.outcomes)} tickers, "
        f"{result.requests} requests.",
        f"Downloaded {counts['downloaded']} (rows new {result.rows_new}, corrected {result.rows_corrected}), "
        f"unchanged {counts['unchanged']}, unavailable {counts['unavailable']}, rejected {counts['rejected']}; "
        f"rows rejected by the row rules: {result.rows_rejected}.",
    ]
    if result.changed:
        lines.append(f"Changed in Stocks/: {capped(result.changed)}")
    failures = result.failed
    for outcome in failures[:MAX_FAILURE_LINES]:
        lines.append(f"  {outcome.ticker}: {outcome.status.value}: {outcome.reason}")
    if len(failures) > MAX_FAILURE_LINES:
        lines.append(f"  ... and {len(failures) - MAX_FAILURE_LINES} more failing tickers (see the run's metadata)")
    partial = [o for o in result.outcomes if o.rows_rejected and not o.failed]
    if partial:
        lines.append("Rows rejected: " + capped(f"{o.ticker} {o.rows_rejected}" for o in partial))
    if marker_uri:
        lines.append(f"Marker {marker_uri} written: the batch load picks up the {len(result.changed)} changed files.")
    else:
        lines.append("No Stocks/ file changed: no marker written, so no load follows.")
    for count in per_day(result):
        lines.append(
            f"  {count.day}: {count.tickers_with_prices} tickers with prices, {count.rows_new} new, "
            f"{count.rows_corrected} corrected"
        )
    return lines


def failure_message(result: DownloadResult, source: str) -> str:
    """Why a run in which every ticker failed is a failure (on a closure the calendar does not know, every ticker
    answers no data)."""
    reasons = Counter(o.reason or o.status.value for o in result.outcomes)
    common = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
    return (
        f"No ticker of {len(result.outcomes)} got prices from {source} for {span(result.days)}: {common}. "
        "Nothing was written. If the exchange was closed that day, every ticker answers 'no prices': add the day "
        f"to {CLOSED_DAYS}. Otherwise check the provider's key, quota and base URL."
    )
