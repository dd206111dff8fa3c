"""法定工作日: China's working days, for statutory time limits.

A working day is a day that is not a public holiday (法定节假日) and not a weekend, except the
weekend days the State Council moves work to (调休上班). The calendar is the chinese-calendar
package, which carries each year's State Council notice since 2004, and conf/workdays.yaml for a
year the package does not carry yet; a year neither knows is counted Monday to Friday (logged).

Counting follows 民法典 第二百零一条 ("开始的当日不计入，自下一日开始计算") and 行政许可法 第八十二条
(time limits in working days, 不含法定节假日): a limit of n working days from a case accepted on
day d ends at the end of the n-th working day after d.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from pathlib import Path

import chinese_calendar
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from citylake.config import CONF_DIR, ConfigError

log = logging.getLogger(__name__)

WORKDAYS_FILE = "workdays.yaml"


class _Year(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    holidays: list[dt.date] = []
    workdays: list[dt.date] = []


class _Published(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    years: dict[int, _Year] = {}


@functools.cache
def published(conf_dir: Path = CONF_DIR) -> dict[int, _Year]:
    """The years conf/workdays.yaml adds to (or corrects in) the package's calendar."""
    path = conf_dir / WORKDAYS_FILE
    if not path.exists():
        return {}
    try:
        found = _Published.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (ValidationError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    for year, days in found.years.items():
        wrong = [d for d in days.holidays + days.workdays if d.year != year]
        if wrong:
            raise ConfigError(f"{path}: years.{year} lists {wrong[0]}, a day of another year")
    return found.years


def _package_years() -> range:
    first = min(chinese_calendar.holidays).year
    last = max(chinese_calendar.holidays).year
    return range(first, last + 1)


def covered(year: int) -> bool:
    """Whether the holidays of year are known (package or conf/workdays.yaml)."""
    return year in published() or year in _package_years()


def uncovered(first: dt.date, last: dt.date) -> list[int]:
    """The years from first to last whose holidays nobody knows: counted Monday to Friday."""
    return [year for year in range(first.year, last.year + 1) if not covered(year)]


def is_workday(day: dt.date) -> bool:
    """Whether day is a 法定工作日."""
    conf = published().get(day.year)
    if conf is not None:
        if day in conf.workdays:
            return True
        return day.weekday() < 5 and day not in conf.holidays
    if day.year in _package_years():
        return chinese_calendar.is_workday(day)
    return day.weekday() < 5


def add_workdays(start: dt.date, days: int) -> dt.date:
    """The n-th working day after start (start itself not counted); start when days is 0."""
    if days < 0:
        raise ValueError(f"a time limit of {days} working days")
    day = start
    while days:
        day += dt.timedelta(days=1)
        days -= is_workday(day)
    return day


def calendar(first: dt.date, last: dt.date) -> list[tuple[dt.date, bool, int]]:
    """Every day from first to last: (day, is_workday, ordinal), where ordinal counts the working
    days up to and including the day, so the n-th working day after d is the working day whose
    ordinal is ordinal(d) + n (what a Spark join needs). Logs the years it counts Monday to
    Friday."""
    missing = uncovered(first, last)
    if missing:
        log.warning(
            "no holiday calendar for %s (chinese-calendar %s covers %s–%s): those years are "
            "counted Monday to Friday; add the State Council's notice to conf/%s",
            ", ".join(map(str, missing)),
            getattr(chinese_calendar, "__version__", "?"),
            _package_years().start,
            _package_years().stop - 1,
            WORKDAYS_FILE,
        )
    rows, ordinal, day = [], 0, first
    while day <= last:
        working = is_workday(day)
        ordinal += working
        rows.append((day, working, ordinal))
        day += dt.timedelta(days=1)
    return rows
