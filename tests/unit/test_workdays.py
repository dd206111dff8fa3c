"""法定工作日: China's working days, on dates checked against the State Council's notice for 2026
(国办发明电〔2025〕7号: 春节 2月15日至23日放假, 2月14日、2月28日上班; 中秋节 9月25日; 国庆节
10月1日至7日放假, 9月20日、10月10日上班), and the deadline of a service case built on them."""

from __future__ import annotations

import datetime as dt

import pytest

from citylake import workdays

D = dt.date


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (D(2026, 9, 30), True),  # Wednesday before National Day
        (D(2026, 10, 1), False),  # 国庆节
        (D(2026, 10, 7), False),  # last day of the holiday, a Wednesday
        (D(2026, 10, 8), True),
        (D(2026, 10, 10), True),  # Saturday, make-up working day (调休上班)
        (D(2026, 10, 11), False),  # Sunday
        (D(2026, 9, 20), True),  # Sunday, make-up working day
        (D(2026, 9, 25), False),  # 中秋节, a Friday
        (D(2026, 2, 14), True),  # Saturday before 春节, make-up
        (D(2026, 2, 16), False),  # 春节, a Monday
        (D(2026, 2, 24), True),
    ],
)
def test_holidays_and_make_up_days_of_2026(day, working):
    assert workdays.is_workday(day) is working


def test_five_working_days_from_the_eve_of_national_day_end_on_13_october():
    # Accepted Wednesday 30 September: the 8th, the 9th, Saturday the 10th (make-up), Monday the
    # 12th and Tuesday the 13th. Counted in calendar days it would have been 5 October.
    assert workdays.add_workdays(D(2026, 9, 30), 5) == D(2026, 10, 13)
    assert workdays.add_workdays(D(2026, 9, 30), 1) == D(2026, 10, 8)
    assert workdays.add_workdays(D(2026, 9, 30), 0) == D(2026, 9, 30)
    # A case accepted on a holiday: the count starts on the next working day all the same.
    assert workdays.add_workdays(D(2026, 10, 3), 1) == D(2026, 10, 8)
    with pytest.raises(ValueError):
        workdays.add_workdays(D(2026, 9, 30), -1)


def test_ordinals_find_the_nth_working_day_after():
    rows = workdays.calendar(D(2026, 9, 1), D(2026, 12, 31))
    ordinal = {day: n for day, _, n in rows}
    working = {n: day for day, is_working, n in rows if is_working}
    for start in (D(2026, 9, 18), D(2026, 9, 30), D(2026, 10, 4), D(2026, 11, 2)):
        for n in (1, 5, 20):
            assert working[ordinal[start] + n] == workdays.add_workdays(start, n), (start, n)


def test_a_year_no_calendar_knows_is_counted_monday_to_friday(monkeypatch):
    year = max(y for y in range(2026, 2100) if workdays.covered(y)) + 1
    assert not workdays.covered(year)
    monday = D(year, 1, 1) + dt.timedelta(days=(7 - D(year, 1, 1).weekday()) % 7)
    assert workdays.is_workday(monday) and not workdays.is_workday(monday + dt.timedelta(5))
    said: list[str] = []
    monkeypatch.setattr(workdays.log, "warning", lambda text, *args: said.append(text % args))
    workdays.calendar(D(year - 1, 12, 1), D(year, 1, 31))
    assert len(said) == 1 and said[0].startswith(f"no holiday calendar for {year} ")


def test_a_year_written_in_conf_replaces_the_package(monkeypatch, tmp_path):
    (tmp_path / "workdays.yaml").write_text(
        "years:\n  2027:\n    holidays: ['2027-01-01']\n    workdays: ['2027-01-09']\n",
        encoding="utf-8",
    )
    published = workdays.published(tmp_path)
    monkeypatch.setattr(workdays, "published", lambda: published)
    assert workdays.covered(2027)
    assert not workdays.is_workday(D(2027, 1, 1))  # a Friday, declared a holiday
    assert workdays.is_workday(D(2027, 1, 9))  # a Saturday, declared a working day
    assert workdays.is_workday(D(2027, 1, 4)) and not workdays.is_workday(D(2027, 1, 10))


def test_a_wrong_year_in_conf_names_the_file(tmp_path):
    (tmp_path / "workdays.yaml").write_text(
        "years:\n  2027:\n    holidays: ['2026-10-01']\n", encoding="utf-8"
    )
    with pytest.raises(workdays.ConfigError, match=r"workdays.yaml: years.2027 lists 2026-10-01"):
        workdays.published(tmp_path)


@pytest.mark.spark
def test_service_case_deadline_counts_working_days(spark):
    from pyspark.sql import functions as F

    from base_libraries.service import with_workday_deadline

    # Times as the department writes them, on the city's clock (the session time zone).
    cases = spark.createDataFrame(
        [
            ("A", "2026-09-30 16:20:00", 5),
            ("B", "2026-09-30 09:00:00", 0),
            ("C", "2026-10-03 10:00:00", 1),
            ("D", "2026-02-13 11:00:00", 3),  # Friday before 春节
            ("E", "2026-09-30 23:30:00", 1),  # late in the evening: still the 30th in 贺州
        ],
        "case_number string, accepted string, statutory_days int",
    ).select("case_number", F.to_timestamp("accepted").alias("accepted_at"), "statutory_days")
    found = with_workday_deadline(cases, "accepted_at", "statutory_days", D(2026, 11, 30))
    shown = found.select("case_number", F.date_format("deadline_at", "yyyy-MM-dd HH:mm:ss"))
    assert dict(shown.collect()) == {
        "A": "2026-10-13 23:59:59",
        "B": "2026-09-30 23:59:59",
        "C": "2026-10-08 23:59:59",
        # Saturday the 14th (make-up), then the holiday to the 23rd: the 24th and the 25th
        "D": "2026-02-25 23:59:59",
        "E": "2026-10-08 23:59:59",
    }
    assert found.columns == cases.columns + ["deadline_at"]
