"""Price-move alerts as pure functions: which quotes move, and the SNS messages that tell traders. No I/O.

A quote moves when its price differs from the previous trading day's close by at least the threshold (percent).
An alert is keyed by (ticker, trading day, direction): the first quote of a key alerts, later ones never do (the
claims table enforces it across runs, see claims.py). Several alerts published together go out as one digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from stock_platform.quotes.model import Quote, format_time, trading_day

UP, DOWN = "up", "down"
DIGEST = "digest"
MAX_DIGEST_LINES = 200  # keeps one message far below SNS's 256 KB; more alerts go out as several digests
SUBJECT_SUFFIX = "_Price_Alert"


@dataclass(frozen=True)
class Close:
    day: date
    value: float


@dataclass(frozen=True)
class PriceMove:
    ticker: str
    trading_day: date
    direction: str  # UP or DOWN
    event_time: datetime
    price: float
    previous_close: float
    previous_day: date
    move_percent: float  # signed: (price - close) / close * 100

    @property
    def key(self) -> tuple[str, date, str]:
        return self.ticker, self.trading_day, self.direction

    def line(self) -> str:
        return (
            f"{self.ticker} {self.direction} {self.move_percent:+.2f}%: {self.price:g} at "
            f"{format_time(self.event_time)} vs close {self.previous_close:g} on {self.previous_day.isoformat()}"
        )


@dataclass(frozen=True)
class AlertMessage:
    subject: str
    body: str
    attributes: dict[str, str | float]  # strings, and numbers (SNS DataType Number) for numeric filter policies
    keys: tuple[tuple[str, date, str], ...]  # the claims this message publishes


def move_percent(price: float, close: float) -> float:
    return (price - close) / close * 100.0


def evaluate(
    quotes: Iterable[Quote],
    closes: Mapping[tuple[str, date], Close],
    threshold_percent: float,
    exchange_tz: str,
) -> list[PriceMove]:
    """One move per (ticker, trading day, direction): the earliest quote at or past the threshold.

    `closes` maps (company, trading day) to the previous trading day's close; a quote without one cannot move.
    """
    first: dict[tuple[str, date, str], PriceMove] = {}
    for quote in sorted(quotes, key=lambda q: (q.time_text, q.ticker)):
        day = trading_day(quote.event_time, exchange_tz)
        close = closes.get((quote.company, day))
        if close is None or close.value <= 0:
            continue
        move = move_percent(quote.price, close.value)
        # A hair's rounding must not decide: 1 % of 100.00 is 101.00, which floats see as 0.99999... %.
        if abs(move) + 1e-9 < threshold_percent:
            continue
        direction = UP if move > 0 else DOWN
        candidate = PriceMove(quote.ticker, day, direction, quote.event_time, quote.price, close.value, close.day, move)
        first.setdefault(candidate.key, candidate)
    return sorted(first.values(), key=lambda m: (m.event_time, m.ticker))


def alert_messages(moves: Sequence[PriceMove], subject_prefix: str) -> list[AlertMessage]:
    """One message for a single move, one digest for several (split every MAX_DIGEST_LINES). Pure.

    Attributes let subscribers filter: `ticker` (or "digest"), `direction` (up, down, or mixed in a digest),
    `move` (signed percent; in a digest the largest move), and `tickers` (comma-separated) in a digest.
    """
    subject = f"{subject_prefix}{SUBJECT_SUFFIX}"[:100]
    if len(moves) == 1:
        move = moves[0]
        return [
            AlertMessage(
                subject,
                f"Price alert: {move.line()}.",
                {"ticker": move.ticker, "direction": move.direction, "move": round(move.move_percent, 4)},
                (move.key,),
            )
        ]
    messages = []
    for start in range(0, len(moves), MAX_DIGEST_LINES):
        chunk = moves[start : start + MAX_DIGEST_LINES]
        directions = {m.direction for m in chunk}
        largest = max(chunk, key=lambda m: abs(m.move_percent))
        body = "\n".join([f"Price alerts: {len(chunk)} moves.", *(f"- {m.line()}" for m in chunk)])
        messages.append(
            AlertMessage(
                subject,
                body,
                {
                    "ticker": DIGEST,
                    "direction": directions.pop() if len(directions) == 1 else "mixed",
                    "move": round(largest.move_percent, 4),
                    "tickers": ",".join(sorted({m.ticker for m in chunk})),
                },
                tuple(m.key for m in chunk),
            )
        )
    return messages
