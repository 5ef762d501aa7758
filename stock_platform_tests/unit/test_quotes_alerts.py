"""Price-move evaluation and alert messages: pure functions, no database, no SNS."""

from datetime import date, datetime, timedelta, timezone

import pytest

from stock_platform.quotes.alerts import DIGEST, MAX_DIGEST_LINES, Close, PriceMove, alert_messages, evaluate
from stock_platform.quotes.model import Quote

NY = "America/New_York"
MONDAY = date(2024, 3, 4)
OPEN = datetime(2024, 3, 4, 14, 30, tzinfo=timezone.utc)
CLOSES = {("aapl", MONDAY): Close(date(2024, 3, 1), 100.0), ("msft", MONDAY): Close(date(2024, 3, 1), 400.0)}


def q(ticker: str, minutes: int, price: float) -> Quote:
    return Quote(ticker, OPEN + timedelta(minutes=minutes), price, None, "t")


@pytest.mark.parametrize(
    ("price", "direction"), [(101.0, "up"), (99.0, "down"), (100.99, None), (99.01, None), (150.0, "up")]
)
def test_the_threshold_is_inclusive_in_both_directions(price: float, direction: str | None) -> None:
    moves = evaluate([q("AAPL", 0, price)], CLOSES, 1.0, NY)
    assert [m.direction for m in moves] == ([direction] if direction else [])


def test_one_move_per_ticker_day_and_direction_the_earliest_quote_wins() -> None:
    quotes = [q("AAPL", 9, 103.0), q("AAPL", 3, 101.5), q("AAPL", 5, 98.0), q("AAPL", 7, 97.0), q("AAPL", 6, 100.5)]
    moves = evaluate(quotes, CLOSES, 1.0, NY)
    assert [(m.direction, m.price) for m in moves] == [("up", 101.5), ("down", 98.0)]
    assert moves[0].previous_day == date(2024, 3, 1) and moves[0].move_percent == pytest.approx(1.5)


def test_a_quote_without_a_previous_close_never_alerts() -> None:
    assert evaluate([q("IBM", 0, 1000.0)], CLOSES, 1.0, NY) == []


def test_the_trading_day_is_the_exchanges() -> None:
    evening = Quote("AAPL", datetime(2024, 3, 5, 0, 30, tzinfo=timezone.utc), 110.0, None, "t")  # Monday in NY
    (move,) = evaluate([evening], CLOSES, 1.0, NY)
    assert move.trading_day == MONDAY


def move(ticker: str, direction: str, percent: float) -> PriceMove:
    return PriceMove(ticker, MONDAY, direction, OPEN, 100 + percent, 100.0, date(2024, 3, 1), percent)


def test_one_move_is_one_message_with_filterable_attributes() -> None:
    (message,) = alert_messages([move("AAPL", "up", 1.5)], "StockPlatform")
    assert message.subject == "StockPlatform_Price_Alert"
    assert message.attributes == {"ticker": "AAPL", "direction": "up", "move": 1.5}
    assert "AAPL up +1.50%" in message.body and message.keys == (("AAPL", MONDAY, "up"),)


def test_several_moves_are_one_digest() -> None:
    moves = [move("AAPL", "up", 1.5), move("MSFT", "down", -3.25), move("GE", "up", 2.0)]
    (message,) = alert_messages(moves, "P")
    assert message.attributes == {"ticker": DIGEST, "direction": "mixed", "move": -3.25, "tickers": "AAPL,GE,MSFT"}
    assert message.body.count("\n- ") == 3 and len(message.keys) == 3
    assert "Pipeline" not in message.subject


def test_a_huge_digest_is_split_and_loses_nothing() -> None:
    moves = [move(f"T{i}", "up", 1.0 + i / 1000) for i in range(MAX_DIGEST_LINES + 5)]
    messages = alert_messages(moves, "P")
    assert [len(m.keys) for m in messages] == [MAX_DIGEST_LINES, 5]
    assert {k for m in messages for k in m.keys} == {m.key for m in moves}
