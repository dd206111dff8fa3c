"""The team policy every CityLake DAG follows: DAG ids and Asset names, the tag enum, step
timeouts, the default arguments (owner, retries with exponential backoff, failure callbacks),
the `spark` pool, which errors are worth a retry, and the alert channel (a log file, an
optional webhook, a row in ops.run_log). Imported at DAG parsing: configuration only."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from citylake import catalogue
from citylake.config import CITY_TIMEZONE, load_contracts, load_environment

log = logging.getLogger(__name__)

OWNER = "citylake-data-eng"
SPARK_POOL = "spark"
# One Spark Connect server on 2 cores: two jobs at once keep both busy, a third only queues in it.
SPARK_POOL_SLOTS = 2
# On the city's clock (citylake.config.CITY_TIMEZONE): a day's deliveries belong to the calendar
# day in China, so a run's partition date is its logical date seen from there.
START_DATE = dt.datetime(2026, 1, 1, tzinfo=ZoneInfo(CITY_TIMEZONE))
ADMIN_USER = "admin"
# Written by `scripts/airflow.sh init`; the simple auth manager reads {"user": "password"} from it.
PASSWORDS_FILE = "airflow_passwords.json"
ALERTS_LOG = Path("log") / "alerts.log"
# The alert channel: a log file (default <data root>/log/alerts.log) and an optional webhook that
# receives one JSON document per alert (a chat robot, a pager gateway...).
ALERT_LOG_VARIABLE = "CITYLAKE_ALERT_LOG"
ALERT_WEBHOOK_VARIABLE = "CITYLAKE_ALERT_WEBHOOK"
RUN_LOG_TABLE = "run_log"  # ops.run_log (pipelines/ops.py)

CITY_DAG_ID = "citylake_city"
QUALITY_DAG_ID = "citylake_quality_publish"
INGEST_DAG_PREFIX = "citylake_ingest_"
BUILD_DAG_ID = "citylake_build"
SHARING_DAG_ID = "citylake_sharing"
# 留痕: the data service's accesses reach ops.access_log (and the security officer) this often.
SHARING_CRON = "*/15 * * * *"

# The city DAG runs once a day, in the city's time zone; a weekly or monthly source delivers on
# any day of its period, and the run of that day takes it (other days skip it).
DAILY_CRON = "0 0 * * *"


class Tag(enum.StrEnum):
    """The only tags a CityLake DAG may carry: the project, its role, and the base library."""

    CITYLAKE = "citylake"
    # role
    INGEST = "ingest"
    BUILD = "build"
    QUALITY = "quality"
    CITY = "city"
    SHARING = "sharing"
    # base library
    POPULATION = "population"
    LEGAL_ENTITY = "legal_entity"
    SPATIAL = "spatial"
    CREDIT = "credit"
    LICENCE = "licence"
    SERVICE = "service"


LIBRARY_TAGS = frozenset(Tag(library) for library in catalogue.LIBRARIES)
ROLE_TAGS = frozenset({Tag.INGEST, Tag.BUILD, Tag.QUALITY, Tag.CITY, Tag.SHARING})

# Each step's execution timeout; a hung Spark job fails and retries instead of holding the pool.
STEP_TIMEOUT = {
    "ingest": dt.timedelta(minutes=45),
    "standardize": dt.timedelta(minutes=45),
    "build": dt.timedelta(minutes=45),
    "quality": dt.timedelta(minutes=30),
    "publish": dt.timedelta(minutes=20),
    "freshness": dt.timedelta(minutes=10),
    "access_log": dt.timedelta(minutes=10),
}


# ----------------------------------------------------------------------------- names


@functools.cache
def contracts() -> dict:
    """The source contracts, read once per process: a DAG file asks for them many times, and the
    dag-processor parses each file in a process of its own, so a changed contract is seen."""
    return load_contracts()


def source_ids() -> list[str]:
    """Every source contract in conf/sources, sorted."""
    return sorted(contracts())


def gold_tables(library: str | None = None) -> list[str]:
    """Gold tables (of one library), in catalog order: each after the gold tables it reads."""
    return [t.name for t in catalogue.build_order() if library is None or t.library == library]


def silver_asset_uri(silver_table: str) -> str:
    return f"citylake://silver/{silver_table}"


def source_asset_uri(source_id: str) -> str:
    """The silver Asset a source's standardize step updates."""
    return silver_asset_uri(contracts()[source_id].silver_table)


def ingest_dag_id(source_id: str) -> str:
    return f"{INGEST_DAG_PREFIX}{source_id}"


# ----------------------------------------------------------------------------- errors and alerts


def is_transient(error: BaseException | None) -> bool:
    """Whether a retry may help. A CityLakeError is a problem in the data or the configuration
    (a broken delivery, a failed quality gate): it fails the same way every time."""
    from citylake.errors import CityLakeError

    if error is None:
        return True
    if isinstance(error, CityLakeError):
        return False
    cause = error.__cause__
    return not isinstance(cause, CityLakeError)


def _alert_record(context: Mapping[str, Any], state: str) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    if exception is not None and exception.__cause__ is not None and not is_transient(exception):
        exception = exception.__cause__  # the contract violation, not Airflow's wrapper around it
    logical = context.get("logical_date")
    return {
        "logged_at": dt.datetime.now(dt.UTC).replace(microsecond=0),
        "dag_id": str(getattr(ti, "dag_id", "?")),
        "task_id": str(getattr(ti, "task_id", "?")),
        "run_id": str(getattr(ti, "run_id", "?")),
        "logical_date": logical.isoformat() if logical else None,
        "try_number": int(getattr(ti, "try_number", 0) or 0),
        "state": state,
        "error_type": type(exception).__name__ if exception else None,
        "error": str(exception).replace("\n", " ")[:2000] if exception else None,
        "is_transient": is_transient(exception) if exception else None,
    }


def send_alert(record: Mapping[str, Any]) -> None:
    """The alert channel: one tab-separated line in the alert log, and the webhook if configured.

    A webhook that does not answer is logged, never raised: the alert must not hide the failure.
    """
    fields = [
        record["logged_at"].isoformat(timespec="seconds"),
        record["state"].upper(),
        record["dag_id"],
        record["task_id"],
        record["run_id"],
        f"try={record['try_number'] or '?'}",
        f"{record['error_type']}: {record['error']}"[:500] if record.get("error_type") else "",
    ]
    path = alert_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as alerts:
        alerts.write("\t".join(str(f) for f in fields) + "\n")
    webhook = os.environ.get(ALERT_WEBHOOK_VARIABLE)
    if webhook:
        payload = {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in record.items()
        }
        try:
            httpx.post(webhook, json={"source": "citylake", **payload}, timeout=5.0)
        except httpx.HTTPError as exc:
            log.warning("alert webhook %s did not take the alert: %s", webhook, exc)


def alert_log_path() -> Path:
    configured = os.environ.get(ALERT_LOG_VARIABLE)
    return Path(configured) if configured else load_environment().root / ALERTS_LOG


def write_run_log(records: Iterable[Mapping[str, Any]]) -> None:
    """Append rows to ops.run_log (Delta, written by delta-rs: no Spark session for an alert),
    the pipeline dashboard's record of failures and retries."""
    from citylake.lake import Lake
    from pipelines import ops

    ops.append(Lake(load_environment()), ops.RUN_LOG, [dict(r) for r in records])


def _record_run_log(record: Mapping[str, Any]) -> None:
    try:
        write_run_log([record])
    except Exception as exc:  # noqa: BLE001 - the callback must not mask the task's own failure
        log.warning("could not write ops.%s: %s: %s", RUN_LOG_TABLE, type(exc).__name__, exc)


def alert_on_failure(context: Mapping[str, Any]) -> None:
    """A task failed for good: alert (log file, webhook) and record it in ops.run_log."""
    record = _alert_record(context, "failed")
    send_alert(record)
    _record_run_log(record)


def record_retry(context: Mapping[str, Any]) -> None:
    """A task failed and will retry: ops.run_log only (a retry that then succeeds is no incident)."""
    _record_run_log(_alert_record(context, "up_for_retry"))


DEFAULT_ARGS: Mapping[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=30),
    # Airflow 3.3 takes a multiplier (2.0 doubles the delay each retry), no longer a bool.
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": dt.timedelta(minutes=10),
    "execution_timeout": dt.timedelta(hours=1),
    "on_failure_callback": alert_on_failure,
    "on_retry_callback": record_retry,
}
