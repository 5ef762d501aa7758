"""The exchange calendar against NYSE's published holiday schedules."""

from datetime import date, timedelta

import pytest

from stock_platform.trading_days import closure, closures, easter, holidays, parse_closed_days, previous_trading_day

# NYSE's published full-day closures (observed dates).
PUBLISHED = {
    2021: ["01-01", "01-18", "02-15", "04-02", "05-31", "07-05", "09-06", "11-25", "12-24"],
    # New Year's Day 2022 was a Saturday and was not observed; Juneteenth's first year.
    2022: ["01-17", "02-21", "04-15", "05-30", "06-20", "07-04", "09-05", "11-24", "12-26"],
    2025: ["01-01", "01-20", "02-17", "04-18", "05-26", "06-19", "07-04", "09-01", "11-27", "12-25"],
    2026: ["01-01", "01-19", "02-16", "04-03", "05-25", "06-19", "07-03", "09-07", "11-26", "12-25"],
    2027: ["01-01", "01-18", "02-15", "03-26", "05-31", "06-18", "07-05", "09-06", "11-25", "12-24"],
}


@pytest.mark.parametrize("year", sorted(PUBLISHED))
def test_the_rules_give_the_published_closures(year: int) -> None:
    assert sorted(d.isoformat() for d in holidays(year)) == [f"{year}-{md}" for md in PUBLISHED[year]]


def test_easter() -> None:
    known = ["2000-04-23", "2019-04-21", "2024-03-31", "2025-04-20", "2026-04-05", "2027-03-28", "2038-04-25"]
    assert [easter(date.fromisoformat(d).year).isoformat() for d in known] == known


def test_an_unscheduled_closure_and_a_configured_one_are_closures() -> None:
    assert closure(date(2025, 1, 9)) == "National Day of Mourning for President Jimmy Carter"
    assert closure(date(2026, 3, 10)) is None
    assert closure(date(2026, 3, 10), extra=[date(2026, 3, 10)]) is not None


def test_closures_lists_weekdays_only_within_the_range() -> None:
    found = closures(date(2026, 11, 1), date(2026, 12, 31), extra=[date(2026, 12, 5)])  # a Saturday
    assert list(found) == [date(2026, 11, 26), date(2026, 12, 25)]


def test_the_trading_day_before_a_holiday_weekend() -> None:
    assert previous_trading_day(date(2026, 11, 27)) == date(2026, 11, 25)  # Thanksgiving in between
    assert previous_trading_day(date(2026, 4, 6)) == date(2026, 4, 2)  # Good Friday and the weekend
    assert previous_trading_day(date(2025, 1, 10)) == date(2025, 1, 8)


def test_a_year_has_about_252_trading_days() -> None:
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    assert sum(closure(d) is None for d in days) == 251  # 261 weekdays, 10 closures


def test_configured_closures_are_dates_and_a_bad_one_names_the_variable() -> None:
    assert parse_closed_days(" 2026-11-24, 2026-12-24 ") == (date(2026, 11, 24), date(2026, 12, 24))
    assert parse_closed_days(None) == parse_closed_days("") == ()
    with pytest.raises(ValueError, match=r"STOCK_PLATFORM_MARKET_CLOSED_DAYS.*'2026-13-01'"):
        parse_closed_days("2026-11-24,2026-13-01")
