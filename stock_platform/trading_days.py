"""The exchange's trading days: weekdays the New York Stock Exchange is open. Pure and Dagster-free.

NYSE's full-day closures follow fixed rules (rule 7.2 of its rulebook), computed here for any year:
New Year's Day, Martin Luther King Jr. Day, Washington's Birthday, Good Friday, Memorial Day, Juneteenth (since
2022), Independence Day, Labor Day, Thanksgiving and Christmas. A holiday on a Saturday is observed on the Friday
before, one on a Sunday on the Monday after; except New Year's Day on a Saturday, which is not observed (the Friday
before ends a year, and the exchange stays open).

Unscheduled closures (a national day of mourning, a storm) follow no rule: the known ones since the platform's
default start are listed in `UNSCHEDULED`, and a deployment adds others without a release through
STOCK_PLATFORM_MARKET_CLOSED_DAYS (settings.py). Early closes (13:00 the day after Thanksgiving, ...) are trading
days with a full row, so they are not closures.

The daily downloads use it for their partitions (no partition, no schedule run and no failing check on a day
without prices) and the quote polling for its market hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta

CLOSED_DAYS = "STOCK_PLATFORM_MARKET_CLOSED_DAYS"  # extra closures, comma-separated YYYY-MM-DD
UNSCHEDULED: Mapping[date, str] = {
    date(2025, 1, 9): "National Day of Mourning for President Jimmy Carter",
}
JUNETEENTH_SINCE = 2022


def parse_closed_days(value: str | None) -> tuple[date, ...]:
    """`2026-11-24, 2026-12-24` -> those dates; unset or blank: none. A bad date fails, naming the variable."""
    days = []
    for text in (value or "").replace(",", " ").split():
        try:
            days.append(date.fromisoformat(text))
        except ValueError:
            raise ValueError(f"{CLOSED_DAYS}: {text!r} is not a date (YYYY-MM-DD)") from None
    return tuple(days)


def easter(year: int) -> date:
    """Easter Sunday in the Gregorian calendar (the anonymous Gregorian algorithm, "Meeus/Jones/Butcher")."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday_shift = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday_shift) // 451
    month, day = divmod(h + weekday_shift - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (1-based; -1: the last) `weekday` (Monday 0) of the month."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    following = date(year + month // 12, month % 12 + 1, 1)
    last = following - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """A fixed-date holiday on a weekend is observed on the nearest weekday."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def holidays(year: int) -> dict[date, str]:
    """The exchange's scheduled full-day closures of `year` (observed dates), by rule."""
    closed: dict[date, str] = {}
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:  # on a Saturday it is not observed (see the module)
        closed[_observed(new_year)] = "New Year's Day"
    closed[_nth_weekday(year, 1, 0, 3)] = "Martin Luther King Jr. Day"
    closed[_nth_weekday(year, 2, 0, 3)] = "Washington's Birthday"
    closed[easter(year) - timedelta(days=2)] = "Good Friday"
    closed[_nth_weekday(year, 5, 0, -1)] = "Memorial Day"
    if year >= JUNETEENTH_SINCE:
        closed[_observed(date(year, 6, 19))] = "Juneteenth National Independence Day"
    closed[_observed(date(year, 7, 4))] = "Independence Day"
    closed[_nth_weekday(year, 9, 0, 1)] = "Labor Day"
    closed[_nth_weekday(year, 11, 3, 4)] = "Thanksgiving Day"
    closed[_observed(date(year, 12, 25))] = "Christmas Day"
    return closed


def closures(first: date, last: date, extra: Iterable[date] = ()) -> dict[date, str]:
    """Every weekday from `first` to `last` (inclusive) the exchange is closed, with why."""
    found: dict[date, str] = {}
    for year in range(first.year, last.year + 1):
        found.update(holidays(year))
    found.update(UNSCHEDULED)
    found.update(dict.fromkeys(extra, f"closed ({CLOSED_DAYS})"))
    return {day: why for day, why in sorted(found.items()) if first <= day <= last and day.weekday() < 5}


def closure(day: date, extra: Iterable[date] = ()) -> str | None:
    """Why the exchange is closed on `day` (a weekend or a closure), or None on a trading day."""
    if day.weekday() >= 5:
        return "a weekend day"
    return closures(day, day, extra).get(day)


def previous_trading_day(day: date, extra: Iterable[date] = ()) -> date:
    """The last trading day before `day`."""
    extra = tuple(extra)
    day -= timedelta(days=1)
    while closure(day, extra) is not None:
        day -= timedelta(days=1)
    return day
