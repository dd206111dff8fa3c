"""What each DAG task runs: the run's day from its context, the skip of a weekly or monthly
source on a day it delivered nothing, and one function per step that calls its step in
citylake.flow by reference (Spark and Great Expectations are imported inside, when the task
runs, never at DAG parsing)."""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from citylake.config import CITY_TIMEZONE, load_environment
from citylake.orchestration.policy import CITY_DAG_ID, contracts, send_alert, source_asset_uri

# ----------------------------------------------------------------------------- run dates


def partition_date(context: Mapping[str, Any]) -> dt.date:
    """The day a run processes: its logical date in the city's time zone.

    A run without a logical date (Airflow 3 allows it; asset-triggered runs have none) processes
    the newest day named by the asset events that triggered it, else the day it ran for
    (`run_after`).
    """
    moment = context.get("logical_date")
    if moment is None:
        days = _event_days(context.get("triggering_asset_events"))
        if days:
            return max(days)
        moment = context["dag_run"].run_after
    return _city_day(moment)


def _city_day(moment: dt.datetime) -> dt.date:
    local = moment.astimezone(ZoneInfo(CITY_TIMEZONE))
    # A plain date: Airflow hands over pendulum datetimes, and PySpark rejects pendulum's Date.
    return dt.date(local.year, local.month, local.day)


def _events(triggering: Any) -> list[Any]:
    if not triggering:
        return []
    return [event for asset in triggering for event in triggering[asset]]


def _event_days(triggering: Any) -> list[dt.date]:
    """Days named in the extras of triggering asset events ({"date": "YYYY-MM-DD"})."""
    days = []
    for event in _events(triggering):
        value = (getattr(event, "extra", None) or {}).get("date")
        if value:
            days.append(dt.date.fromisoformat(value))
    return days


# ----------------------------------------------------------------------------- what tasks run


class contract_violations_fail:  # noqa: N801 - used as a context manager and a decorator
    """CityLakeError → AirflowFailException: the data or the configuration is wrong, not the
    machine, and a retry would fail the same way. Anything else propagates and is retried."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        from citylake.errors import CityLakeError

        if isinstance(error, CityLakeError):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(error).__name__}: {error}") from error
        return False

    def __call__(self, function: Callable) -> Callable:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with contract_violations_fail():
                return function(*args, **kwargs)

        return guarded


def _context() -> Mapping[str, Any]:
    from airflow.sdk import get_current_context

    return get_current_context()


def _skip(reason: str) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    raise AirflowSkipException(reason)


def _set_event(context: Mapping[str, Any], uri: str, extra: dict[str, Any]) -> None:
    from airflow.sdk import Asset

    context["outlet_events"][Asset(uri)].extra = extra


def skip_unless_delivered(source_id: str, day: dt.date) -> None:
    """Skip the ingest of a weekly or monthly source on a day it delivered nothing.

    Such a source has nothing to ingest on most days, and that is no incident. A daily source that
    delivered nothing is one: flow.ingest raises DeliveryError, the task fails and alerts.
    """
    if contracts()[source_id].frequency == "daily":
        return
    if not delivered_days(source_id, [day]):
        _skip(f"{source_id} delivers {contracts()[source_id].frequency}; nothing for {day}")


def delivered_days(source_id: str, days: Iterable[dt.date]) -> list[dt.date]:
    """Those of days on which the source's landing folder holds anything at all: what ingest
    will take or refuse (a link, a hidden file) is for ingest to say, never skipped here."""
    env, contract = load_environment(), contracts()[source_id]
    found = []
    for day in days:
        folder = env.landing / contract.department / contract.source_name / day.isoformat()
        if os.path.lexists(folder) and (not folder.is_dir() or any(folder.iterdir())):
            found.append(day)
    return found


def _days_to_take(source_id: str, context: Mapping[str, Any]) -> list[dt.date]:
    """The run's day, unless a weekly or monthly source delivered nothing then (skipped)."""
    day = partition_date(context)
    skip_unless_delivered(source_id, day)
    return [day]


def ingest_task(source_id: str) -> list[dict]:
    """landing/<department>/<source>/<day>/ → bronze.<source_id>, for the run's delivery days."""
    from citylake import flow  # Spark: imported in the running task, never at DAG parsing

    context = _context()
    return [flow.ingest(source_id, day) for day in _days_to_take(source_id, context)]


def standardize_task(source_id: str) -> list[dict]:
    """bronze.<source_id> → silver, rejected rows to quarantine.<source_id>; updates the Asset."""
    from citylake import flow

    context = _context()
    days = _days_to_take(source_id, context)
    results = [flow.standardize(source_id, day) for day in days]
    if context.get("outlet_events") is not None and context["dag"].dag_id != CITY_DAG_ID:
        _set_event(
            context,
            source_asset_uri(source_id),
            {"date": max(days).isoformat(), "source_id": source_id},
        )
    return results


def build_task(table: str) -> dict:
    """silver as of the run's day (+ gold it reads) → gold.<table>; skipped when nothing changed."""
    from citylake import flow

    return flow.build(table, partition_date(_context()))


def quality_task(table: str) -> dict:
    """Great Expectations gate; a failed hard check fails the task and blocks publication."""
    from citylake import flow

    return flow.check_quality(table)


def publish_task() -> dict:
    """gate-passed gold → the DuckDB serving file, swapped in atomically; the links between the
    libraries measured as of the run's day."""
    from citylake import flow

    return flow.publish(partition_date(_context()))


def access_log_task() -> dict:
    """留痕: every access to the data service not in ops.access_log yet, carried in id order."""
    from citylake import flow

    return flow.carry_access_log()


def overdue_sources(as_of: dt.date) -> list[dict]:
    """Sources whose last delivery on or before as_of is older than their contract's window allows
    (quality.freshness, which reads ops.ingest_manifest), as JSON-able dicts."""
    from quality import freshness

    return [source.as_dict() for source in freshness.overdue_sources(as_of)]


def freshness_task() -> list[dict]:
    """Sources that missed their delivery window: an alert each; the list is the task's XCom."""
    context = _context()
    as_of = partition_date(context)
    overdue = overdue_sources(as_of)
    ti = context.get("ti")
    for source in overdue:
        send_alert(
            {
                "logged_at": dt.datetime.now(dt.UTC).replace(microsecond=0),
                "state": "overdue",
                "dag_id": getattr(ti, "dag_id", CITY_DAG_ID),
                "task_id": getattr(ti, "task_id", "check_freshness"),
                "run_id": getattr(ti, "run_id", "?"),
                "try_number": getattr(ti, "try_number", 0),
                "error_type": "SourceOverdue",
                "error": (
                    f"{source['source_id']} ({source['department_name']}, {source['frequency']}) "
                    f"last delivered {source['last_delivery'] or 'never'}, due by "
                    f"{source['due_by'] or 'its first delivery'}; checked for {as_of}"
                ),
            }
        )
    return overdue
