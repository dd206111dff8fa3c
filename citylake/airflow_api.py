"""A client of Airflow's REST API v2: trigger a DAG run, follow it task by task, read the last runs
and their failed tasks' logs, and check the services' health. Used by the CLI (`citylake
airflow-run`, `citylake status`) and scripts/airflow.sh; the DAGs themselves never call it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from zoneinfo import ZoneInfo

import httpx

from citylake.config import CITY_TIMEZONE, Environment, load_environment
from citylake.orchestration.policy import ADMIN_USER, ALERTS_LOG, CITY_DAG_ID, PASSWORDS_FILE, Tag


class AirflowError(RuntimeError):
    """Airflow's API refused a request or a run did not finish in time; the message says which."""


FINAL_STATES = frozenset({"success", "failed"})
# How long a waiting client tolerates a scheduler without a heartbeat: scripts/airflow.sh restarts
# a scheduler that died (a start takes about half a minute with the preloaded imports).
SCHEDULER_GRACE_S = 180.0
# How long trigger waits for the scheduler to create the run that unpausing a DAG makes due.
SCHEDULED_RUN_WAIT_S = 60.0


def _base_url(env: Environment) -> str:
    return f"http://{env.services.host}:{env.services.airflow_port}"


def unpause(api: httpx.Client, dag_id: str) -> None:
    _raise_for(api.patch(f"/dags/{dag_id}", json={"is_paused": False}), f"unpause {dag_id}")


def admin_password(env: Environment | None = None) -> str:
    env = env or load_environment()
    path = env.secrets / PASSWORDS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))[ADMIN_USER]
    except FileNotFoundError as exc:
        raise AirflowError(f"{path} not found: run `scripts/airflow.sh init` first") from exc
    except (KeyError, json.JSONDecodeError) as exc:
        raise AirflowError(f"{path}: expected JSON with a '{ADMIN_USER}' password") from exc


def client(env: Environment | None = None, timeout_s: float = 30.0) -> httpx.Client:
    """An httpx client on /api/v2, authenticated with a fresh JWT for the admin user."""
    env = env or load_environment()
    base = _base_url(env)
    try:
        response = httpx.post(
            f"{base}/auth/token",
            json={"username": ADMIN_USER, "password": admin_password(env)},
            timeout=timeout_s,
        )
    except httpx.ConnectError as exc:
        raise AirflowError(
            f"Airflow does not answer on {base}: run `scripts/airflow.sh start`"
        ) from exc
    _raise_for(response, "POST /auth/token")
    token = response.json()["access_token"]
    return httpx.Client(
        base_url=f"{base}/api/v2",
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout_s,
    )


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.is_error:
        raise AirflowError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")


def trigger(api: httpx.Client, dag_id: str, logical_date: dt.datetime | None) -> str:
    """Unpause the DAG and make sure a fresh run for logical_date is on its way; returns its id.

    Unpausing lets the scheduler create the latest scheduled run at once (catchup=False). When
    that run is the one for logical_date, trigger waits for the scheduler to create it; when the
    run for that date exists already, that run is the one, cleared to run again if it had
    finished; otherwise a manual run is created.
    """
    if logical_date is not None and logical_date.tzinfo is None:
        # The API wants an aware datetime; a naive one means the city's clock.
        logical_date = logical_date.replace(tzinfo=ZoneInfo(CITY_TIMEZONE))
    when = logical_date.isoformat() if logical_date else None
    dag = api.get(f"/dags/{dag_id}")
    _raise_for(dag, f"get {dag_id}")
    scheduled_next = logical_date is not None and _scheduler_creates(dag.json(), logical_date)
    unpause(api, dag_id)
    # The scheduler is about to create this very run: wait for it rather than race it with a
    # manual one (a lost race leaves the scheduler warning about the taken date every loop).
    run = _find_run(api, dag_id, when, SCHEDULED_RUN_WAIT_S if scheduled_next else 0.0)
    if run is None:
        response = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": when})
        if response.status_code != httpx.codes.CONFLICT or logical_date is None:
            _raise_for(response, f"trigger {dag_id}")
            return response.json()["dag_run_id"]
        run = _find_run(api, dag_id, when, 0.0)
        if run is None:
            _raise_for(response, f"trigger {dag_id}")
    if run["state"] in FINAL_STATES:
        cleared = api.post(
            f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/clear", json={"dry_run": False}
        )
        _raise_for(cleared, f"clear {dag_id}/{run['dag_run_id']}")
    return run["dag_run_id"]


def _scheduler_creates(dag: dict, logical_date: dt.datetime) -> bool:
    """Whether unpausing this (paused) DAG makes the scheduler create the run of logical_date."""
    next_date, run_after = dag.get("next_dagrun_logical_date"), dag.get("next_dagrun_run_after")
    if not dag.get("is_paused") or not next_date or not run_after:
        return False
    due = dt.datetime.fromisoformat(run_after) <= dt.datetime.now(dt.UTC)
    return due and dt.datetime.fromisoformat(next_date) == logical_date


def _find_run(api: httpx.Client, dag_id: str, when: str | None, wait_s: float) -> dict | None:
    """The run of dag_id at logical date `when`, waiting up to wait_s for it to appear."""
    if when is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        found = api.get(
            f"/dags/{dag_id}/dagRuns", params={"logical_date_gte": when, "logical_date_lte": when}
        )
        _raise_for(found, f"find the run of {dag_id} at {when}")
        runs = found.json()["dag_runs"]
        if runs or time.monotonic() >= deadline:
            return runs[0] if runs else None
        time.sleep(1.0)


def wait(
    api: httpx.Client,
    dag_id: str,
    run_id: str,
    timeout_s: float,
    poll_s: float = 5.0,
    scheduler_grace_s: float = SCHEDULER_GRACE_S,
    on_poll: Callable[[list[dict]], None] | None = None,
) -> str:
    """Poll a run until it is success or failed. Raises AirflowError after timeout_s, or as soon
    as the scheduler has not heartbeated for scheduler_grace_s: no run moves without it.
    on_poll, when given, sees the run's task instances at every poll (a progress display)."""
    deadline = time.monotonic() + timeout_s
    silent_since = None
    while True:
        response = api.get(f"/dags/{dag_id}/dagRuns/{run_id}")
        _raise_for(response, f"get run {dag_id}/{run_id}")
        state = response.json()["state"]
        if on_poll is not None:
            on_poll(task_instances(api, dag_id, run_id))
        if state in FINAL_STATES:
            return state
        now = time.monotonic()
        if now > deadline:
            raise AirflowError(
                f"run {dag_id}/{run_id} still '{state}' after {timeout_s:.0f} s; see the Airflow "
                f"UI or {ALERTS_LOG} under the data root"
            )
        healthy, body = health(str(api.base_url.join("monitor/health")), needed=("scheduler",))
        heartbeat = (body.get("scheduler") or {}).get("latest_scheduler_heartbeat")
        silent_since = None if healthy else (silent_since or now)
        if silent_since is not None and now - silent_since > scheduler_grace_s:
            raise AirflowError(
                f"run {dag_id}/{run_id} still '{state}': the scheduler has not been healthy for "
                f"{now - silent_since:.0f} s (last heartbeat {heartbeat or 'never'}); see "
                "log/airflow-scheduler.log under the data root and `scripts/airflow.sh status`"
            )
        time.sleep(poll_s)


def task_instances(api: httpx.Client, dag_id: str, run_id: str) -> list[dict]:
    """Every task instance of a run (the API pages them, 100 at most per page)."""
    found: list[dict] = []
    while True:
        response = api.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
            params={"limit": 100, "offset": len(found)},
        )
        _raise_for(response, f"task instances of {dag_id}/{run_id}")
        body = response.json()
        found += body["task_instances"]
        if not body["task_instances"] or len(found) >= body.get("total_entries", 0):
            return found


def task_states(api: httpx.Client, dag_id: str, run_id: str) -> dict[str, str | None]:
    return {ti["task_id"]: ti["state"] for ti in task_instances(api, dag_id, run_id)}


def last_run_state(dag_id: str, logical_date: dt.datetime) -> str | None:
    """The state of dag_id's run at logical_date (naive: the city's clock), None when none."""
    if logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=ZoneInfo(CITY_TIMEZONE))
    with client() as api:
        run = _find_run(api, dag_id, logical_date.isoformat(), 0.0)
    return None if run is None else run["state"]


def last_runs(limit: int = 20) -> list[dict]:
    """The most recent runs of every DAG, newest first: dag_id, run_id, logical_date, state, ..."""
    keys = ("dag_id", "dag_run_id", "logical_date", "run_type", "state", "start_date", "end_date")
    with client() as api:
        # "~" stands for every DAG in the v2 API.
        response = api.get("/dags/~/dagRuns", params={"order_by": "-start_date", "limit": limit})
        _raise_for(response, "list runs")
        return [{k: run.get(k) for k in keys} for run in response.json()["dag_runs"]]


def _log_tail(api: httpx.Client, dag_id: str, run_id: str, ti: dict, lines: int) -> list[str]:
    """The last lines of a task instance's log (try ti['try_number']), as text."""
    url = (
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
        f"{max(int(ti.get('try_number') or 1), 1)}"
    )
    response = api.get(url, params={"full_content": True}, headers={"Accept": "application/json"})
    if response.is_error:
        return [f"(log not readable: HTTP {response.status_code})"]
    text = []
    for entry in response.json().get("content") or []:
        if isinstance(entry, dict):
            event = entry.get("event", "")
            if entry.get("error_detail"):
                details = entry["error_detail"]
                first = details[0] if isinstance(details, list) and details else {}
                event = f"{event} {first.get('exc_type', '')}: {first.get('exc_value', '')}"
            level = entry.get("level", "")
            text.append(f"{entry.get('timestamp', '')} {level} {event}".strip())
        else:
            text.append(str(entry))
    return text[-lines:]


def _last_run(api: httpx.Client, dag_id: str) -> dict | None:
    response = api.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 1})
    _raise_for(response, f"last run of {dag_id}")
    runs = response.json()["dag_runs"]
    return runs[0] if runs else None


def _overdue_from_xcom(api: httpx.Client) -> dict | None:
    """The overdue sources the latest successful freshness check of the city DAG reported."""
    response = api.get(
        f"/dags/{CITY_DAG_ID}/dagRuns",
        params={"order_by": "-run_after", "limit": 10},
    )
    if response.is_error:
        return None
    for run in response.json()["dag_runs"]:
        xcom = api.get(
            f"/dags/{CITY_DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/check_freshness/"
            "xcomEntries/return_value",
            params={"deserialize": True, "stringify": False},
        )
        if xcom.is_success:
            value = xcom.json().get("value")
            if isinstance(value, str):
                value = json.loads(value)
            return {"run_id": run["dag_run_id"], "overdue": value or []}
    return None


def city_status(log_lines: int = 15) -> dict:
    """The last run of every CityLake DAG, its failed tasks with their log tail, and the sources
    the latest freshness check found overdue; everything from the REST API."""
    with client() as api:
        response = api.get("/dags", params={"tags": Tag.CITYLAKE.value, "limit": 500})
        _raise_for(response, "list DAGs")
        dags = sorted(response.json()["dags"], key=lambda d: d["dag_id"])
        summary = []
        for dag in dags:
            run = _last_run(api, dag["dag_id"])
            entry = {"dag_id": dag["dag_id"], "is_paused": dag.get("is_paused"), "last_run": None}
            if run:
                entry["last_run"] = {
                    k: run.get(k)
                    for k in (
                        "dag_run_id",
                        "logical_date",
                        "run_type",
                        "state",
                        "start_date",
                        "end_date",
                    )
                }
                failed = api.get(
                    f"/dags/{dag['dag_id']}/dagRuns/{run['dag_run_id']}/taskInstances",
                    params={"state": ["failed", "upstream_failed", "up_for_retry"]},
                )
                _raise_for(failed, f"failed tasks of {dag['dag_id']}")
                entry["failed_tasks"] = [
                    {
                        "task_id": ti["task_id"],
                        "state": ti["state"],
                        "try_number": ti.get("try_number"),
                        "log_tail": (
                            _log_tail(api, dag["dag_id"], run["dag_run_id"], ti, log_lines)
                            if ti["state"] != "upstream_failed"
                            else []
                        ),
                    }
                    for ti in failed.json()["task_instances"]
                ]
            summary.append(entry)
        return {"dags": summary, "freshness": _overdue_from_xcom(api)}


def health(
    url: str, needed: Iterable[str] = ("metadatabase", "scheduler", "dag_processor")
) -> tuple[bool, dict]:
    """Whether the components `needed` (by default the metadata database, scheduler and
    dag-processor) report healthy at url, and the body the API server answered."""
    try:
        body = httpx.get(url, timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return False, {}
    return all((body.get(c) or {}).get("status") == "healthy" for c in needed), body
