"""Freshness windows by contract frequency, checked on dates a person can count on a calendar."""

from __future__ import annotations

import datetime as dt

from citylake.config import load_contracts
from quality.freshness import freshness

CONTRACTS = load_contracts()
DAILY = "gongan__household_register"
WEEKLY = "minzheng__marriages"
MONTHLY = "zhujian__buildings"


def standing(last: dict[str, dt.date], on_date: dt.date) -> dict:
    return {f.source_id: f for f in freshness(CONTRACTS, last, on_date)}


def test_contract_frequencies_are_what_the_test_assumes():
    assert [CONTRACTS[s].frequency for s in (DAILY, WEEKLY, MONTHLY)] == [
        "daily",
        "weekly",
        "monthly",
    ]


def test_each_window_ends_a_day_a_week_or_a_calendar_month_after_the_last_delivery():
    last = {
        DAILY: dt.date(2026, 1, 31),
        WEEKLY: dt.date(2026, 1, 31),
        MONTHLY: dt.date(2026, 1, 31),
    }
    on_time = standing(last, dt.date(2026, 2, 1))
    assert not any(on_time[s].overdue for s in (DAILY, WEEKLY, MONTHLY))
    assert on_time[MONTHLY].due_by == dt.date(2026, 2, 28)  # a calendar month, not 30 days
    late = standing(last, dt.date(2026, 2, 2))
    assert late[DAILY].overdue and late[DAILY].days_overdue == 1
    assert not late[WEEKLY].overdue
    week = standing(last, dt.date(2026, 2, 8))
    assert week[WEEKLY].overdue and week[WEEKLY].days_overdue == 1
    assert not standing(last, dt.date(2026, 2, 28))[MONTHLY].overdue
    assert standing(last, dt.date(2026, 3, 1))[MONTHLY].days_overdue == 1


def test_a_source_that_never_delivered_is_overdue():
    found = standing({}, dt.date(2026, 11, 27))
    assert all(f.overdue and f.last_delivery is None for f in found.values())
    assert len(found) == len(CONTRACTS)
    assert found[DAILY].as_dict()["last_delivery"] is None


def test_the_serving_tables_window_in_sql_ends_on_the_same_day_as_the_python_one():
    """The health tables judge freshness in DuckDB; every day of a leap and a common year gives
    the same last on-time day as `citylake freshness` (month ends: 01-31 + 1 month = 02-28/29)."""
    import duckdb

    from citylake.config import Frequency

    days = [dt.date(2027, 12, 31) - dt.timedelta(days=n) for n in range(731)]  # 2026, 2027
    days += [dt.date(2028, 1, 1) + dt.timedelta(days=n) for n in range(366)]
    for frequency in Frequency:
        found = duckdb.execute(
            "SELECT d, (d + ?::INTERVAL)::DATE FROM unnest(?::DATE[]) AS t(d) ORDER BY d",
            [frequency.interval_sql, days],
        ).fetchall()
        assert found == [(d, frequency.due_by(d)) for d in sorted(days)], frequency
