"""Orchestration: the DAG factory and the team policy every DAG follows (Airflow's REST API is
spoken by citylake.airflow_api).

Every DAG is generated here from conf/sources/*.yaml and base_libraries/*.yml; nobody keeps a
list of sources or tables by hand:

    citylake_city                 daily: the whole chain for one logical date (ingest, standardize,
                                  build, gate, publish, freshness), so a backfill of day D redoes D;
                                  it produces no Asset, so no other DAG runs because of it
    citylake_ingest_<source_id>   one per source contract, on demand (a delivery after the day's
                                  run, a one-source backfill): ingest → standardize; updates the
                                  Asset citylake://silver/<silver table>
    citylake_build                scheduled on the silver Assets: every gold table planned in
                                  catalog order (unchanged inputs: skipped), gates, serving file
    citylake_quality_publish      on demand: the gate of every gold table, then the serving file
    citylake_sharing              every 15 minutes: the data service's access log → ops.access_log

One day's work is done once, by one DAG run; the build and publish steps are idempotent and
serialized by locks (citylake.locks), so two DAGs reaching them at once cannot interleave.

The DAG files in dags/ call the factory and nothing else. This module is imported when Airflow
parses them, so it stays cheap: configuration and the catalogue only; airflow.sdk is imported inside
the factory, and the pipelines (Spark, Great Expectations) only inside a running task.

Policy, written once and tested: the tag enum, the default arguments (owner, retries with
exponential backoff, execution timeout, failure callbacks), the `spark` pool, which errors are worth
a retry (none of CityLakeError: a contract violation fails the same way the next time), and the
alert channel (a log file, an optional webhook, and a row in ops.run_log).
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping
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


# ----------------------------------------------------------------------------- what to generate


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


# ----------------------------------------------------------------------------- what tasks run


class _contract_violations_fail:  # noqa: N801 - used as a context manager and a decorator
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
            with _contract_violations_fail():
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


# ----------------------------------------------------------------------------- the factory


def _operator(function: Callable, task_id: str, step: str, **kwargs: Any):
    from airflow.sdk import task

    return task(
        task_id=task_id,
        pool=SPARK_POOL,
        execution_timeout=STEP_TIMEOUT[step],
        doc_md=function.__doc__,
        **kwargs,
    )(_contract_violations_fail()(function))


def _dag(dag_id: str, schedule: Any, tags: list[Tag], doc: str, **kwargs: Any):
    from airflow.sdk import DAG

    return DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=dict(DEFAULT_ARGS),
        tags=[Tag.CITYLAKE, *tags],
        doc_md=doc,
        **kwargs,
    )


def _daily(cron: str):
    from airflow.sdk import CronDataIntervalTimetable

    # The run for a period starts when the period has ended (data-interval semantics, explicit
    # because a plain "@daily" in Airflow 3 gives the run at 00:00 on D+1 the date D+1).
    return CronDataIntervalTimetable(cron, timezone=CITY_TIMEZONE)


def _ingest_pair(source_id: str, outlets: bool):
    from airflow.sdk import Asset

    ingested = _operator(ingest_task, f"ingest_{source_id}", "ingest")(source_id)
    standardized = _operator(
        standardize_task,
        f"standardize_{source_id}",
        "standardize",
        outlets=[Asset(source_asset_uri(source_id))] if outlets else [],
    )(source_id)
    ingested >> standardized
    return standardized


def _build_gate_publish(standardized: Mapping[str, Any]) -> Any:
    """build_<t> (after the silver and gold it reads) → quality_<t> → publish_serving.

    standardized maps a source id to the task that standardizes it in this DAG; a gold table
    whose sources are not in it starts at once. Returns the publish task.
    """
    from airflow.sdk import TriggerRule

    publish = _operator(
        publish_task, "publish_serving", "publish", trigger_rule=TriggerRule.NONE_FAILED
    )()
    built: dict[str, Any] = {}
    for spec in catalogue.build_order():
        # A weekly source skipped today holds nothing back; a failure upstream still does.
        build = _operator(
            build_task, f"build_{spec.name}", "build", trigger_rule=TriggerRule.NONE_FAILED
        )(spec.name)
        for source in spec.sources:
            if source in standardized:
                standardized[source] >> build
        for gold in spec.gold:
            built[gold] >> build
        built[spec.name] = build
        gate = _operator(quality_task, f"quality_{spec.name}", "quality")(spec.name)
        build >> gate >> publish
    return publish


def ingest_dag(source_id: str):
    """citylake_ingest_<source>: one source on demand, e.g. a re-delivery between daily runs."""
    contract = contracts()[source_id]
    doc = (
        f"**{contract.title}** ({contract.title_en}), {contract.department_name} "
        f"({contract.department_name_en}), delivers {contract.frequency}.\n\n"
        f"landing → bronze.{source_id} → silver.{contract.silver_table} "
        f"(Asset `{source_asset_uri(source_id)}`) + quarantine.{source_id}.\n\n"
        f"On demand only: {CITY_DAG_ID} takes every delivery of its day. Trigger this DAG for "
        "a delivery that arrives after the day's run, or to backfill one source; its Asset "
        f"then schedules {BUILD_DAG_ID}."
    )
    dag = _dag(ingest_dag_id(source_id), None, [Tag.INGEST, Tag(contract.library)], doc)
    with dag:
        _ingest_pair(source_id, outlets=True)
    return dag


def build_dag():
    """citylake_build: when an on-demand ingest updates silver, every gold table that it changes."""
    from airflow.sdk import Asset, AssetAny

    inputs = sorted({source_asset_uri(s) for s in source_ids()})
    doc = (
        "Runs when an on-demand ingest DAG updates a silver Asset. Every gold table is planned in "
        "catalog order; a table whose inputs (silver versions as of the day, code) did not change "
        "is skipped in a second, so only what the new delivery reaches is rebuilt. Then the "
        "gates of what changed and the serving file. It produces no Asset: nothing cascades."
    )
    dag = _dag(BUILD_DAG_ID, AssetAny(*(Asset(u) for u in inputs)), [Tag.BUILD], doc)
    with dag:
        _build_gate_publish({})
    return dag


def quality_publish_dag():
    """citylake_quality_publish: on demand, the gate of every gold table, then the serving file."""
    from airflow.sdk import TriggerRule

    doc = (
        "On demand: the Great Expectations gate of every gold table (a version already judged is "
        "not judged again), then the DuckDB serving file from the newest gate-passed version of "
        "each table, swapped in atomically. A newer version not gated yet waits for its gate."
    )
    dag = _dag(QUALITY_DAG_ID, None, [Tag.QUALITY], doc)
    with dag:
        publish = _operator(
            publish_task, "publish_serving", "publish", trigger_rule=TriggerRule.NONE_FAILED
        )()
        for table in gold_tables():
            _operator(quality_task, f"quality_{table}", "quality")(table) >> publish
    return dag


def city_dag():
    """citylake_city: the whole day for one logical date, every source to the serving file."""
    from airflow.sdk import TriggerRule

    doc = (
        "The city's day: every source's deliveries of the logical date D are ingested and "
        "standardized, every gold table is built as of D (each after the silver and gold tables "
        "it reads), gated, and the serving file published; then the sources that missed their "
        "delivery window are reported. Rerunning or backfilling D reproduces D: ingest skips "
        "files already in ops.ingest_manifest, silver applies batches in delivery order from its "
        "ledger (a late or replayed day is rewound and replayed), gold reads silver as of D.\n\n"
        "It produces no Assets, so no other DAG runs because of it; it is the one pass."
    )
    dag = _dag(CITY_DAG_ID, _daily(DAILY_CRON), [Tag.CITY], doc)
    with dag:
        standardized = {s: _ingest_pair(s, outlets=False) for s in source_ids()}
        freshness = _operator(
            freshness_task, "check_freshness", "freshness", trigger_rule=TriggerRule.ALL_DONE
        )()
        list(standardized.values()) >> freshness
        _build_gate_publish(standardized)
    return dag


def sharing_dag():
    """citylake_sharing: the data service's access log into the lake, every 15 minutes."""
    doc = (
        "留痕: every request to the data service (`citylake serve`), granted or denied, is "
        "committed to its state before the answer leaves; this DAG carries the rows not in "
        "ops.access_log yet into it (ID numbers in paths masked), where publication takes them "
        "into the serving file's access tables for the security officer's dashboard."
    )
    dag = _dag(SHARING_DAG_ID, _daily(SHARING_CRON), [Tag.SHARING], doc)
    with dag:
        _operator(access_log_task, "carry_access_log", "access_log")()
    return dag


def generate(kind: str) -> dict[str, Any]:
    """The DAGs of one kind, by dag_id: what each DAG file puts in its module namespace."""
    if kind == "ingest":
        dags = [ingest_dag(s) for s in source_ids()]
    elif kind == "build":
        dags = [build_dag()]
    elif kind == "quality":
        dags = [quality_publish_dag()]
    elif kind == "city":
        dags = [city_dag()]
    elif kind == "sharing":
        dags = [sharing_dag()]
    else:
        raise ValueError(f"unknown kind of DAG '{kind}' (ingest, build, quality, city, sharing)")
    return {d.dag_id: d for d in dags}
