"""Fixtures shared by every test: one local SparkSession, and a throw-away data root."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# Tests run Spark in-process, never against a Connect server a developer left running.
os.environ.pop("CITYLAKE_SPARK_CONNECT", None)


@pytest.fixture(scope="session")
def spark():
    from citylake.spark import get_spark

    return get_spark()


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """A fresh data root for one test; settings() is reloaded so every step sees it."""
    from citylake.config import settings

    monkeypatch.setenv("CITYLAKE_DATA_ROOT", str(tmp_path))
    settings.cache_clear()
    yield tmp_path
    settings.cache_clear()


CITY_DAY = dt.date(2026, 11, 27)
CITY_DAG = "citylake_city"
REPO = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
CITY_RUN_TIMEOUT_S = 2400


@dataclass
class CityRun:
    """The sample city after one `airflow dags test citylake_city <day>`.

    Unpacks as (environment, sample summary, step results) like flow.run_city's caller sees them:
    results are the tasks' return values (XComs), one dict per step with its "step" name.
    """

    env: Any
    summary: Any
    results: list[dict]
    states: dict[str, str]  # task id → state
    runs: list[str]  # the DAG run's state
    returncode: int
    output: str

    def __iter__(self):
        return iter((self.env, self.summary, self.results))


def _step_results(xcoms: dict[str, Any]) -> list[dict]:
    """Task return values as run_city's step list: 'ingest_<s>' → 'ingest <s>', etc."""
    results = []
    for task_id, value in xcoms.items():
        step = task_id.replace("_", " ", 1)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                results.append({"step": step, **item})
    return results


def _read_airflow_db(database: Path) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    with sqlite3.connect(database) as db:
        runs = [r[0] for r in db.execute("SELECT state FROM dag_run WHERE dag_id = ?", (CITY_DAG,))]
        states = dict(
            db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (CITY_DAG,))
        )
        xcoms = {
            task_id: json.loads(value)
            for task_id, value in db.execute(
                "SELECT task_id, value FROM xcom WHERE dag_id = ? AND key = 'return_value'",
                (CITY_DAG,),
            )
        }
    return runs, states, xcoms


@pytest.fixture(scope="session")
def built_city(tmp_path_factory):
    """The whole sample city (every source → bronze → silver + quarantine → gold → quality →
    serving file) at a tiny scale, run once by Airflow itself: `airflow dags test` of the city DAG
    on a throw-away SQLite metadata database, every task in that one process (the tasks call the
    same citylake.flow steps as `citylake run`). Read-only for tests: a test that changes tables
    works on `city_copy`. tests/dags/test_dags_test.py asserts on the run itself; here it only has
    to have produced a city."""
    from citylake.config import settings
    from citylake.sample import generate

    root = tmp_path_factory.mktemp("city")
    airflow_home = root / "airflow"
    variables = {
        **os.environ,
        "CITYLAKE_DATA_ROOT": str(root / "var"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(root / "var" / "log" / "airflow"),
        "PYTHONPATH": str(REPO),
    }
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "CITYLAKE_SPARK_CONNECT"):
        variables.pop(name, None)
    patch = pytest.MonkeyPatch()
    patch.setenv("CITYLAKE_DATA_ROOT", variables["CITYLAKE_DATA_ROOT"])
    settings.cache_clear()
    try:
        env, city, contracts = settings()
        summary = generate(
            env, city, contracts, scale=0.002, seed=7, delivery_date=CITY_DAY, defect_rate=0.05
        )
    finally:
        patch.undo()
        settings.cache_clear()
    airflow_home.mkdir()
    for command in (["db", "migrate"], ["pools", "set", "spark", "2", "Spark tasks"]):
        subprocess.run(
            [AIRFLOW, *command], env=variables, cwd=REPO, check=True, capture_output=True
        )
    done = subprocess.run(
        [AIRFLOW, "dags", "test", CITY_DAG, CITY_DAY.isoformat()],
        env=variables,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CITY_RUN_TIMEOUT_S,
    )
    runs, states, xcoms = _read_airflow_db(airflow_home / "airflow.db")
    output = done.stdout[-4000:] + done.stderr[-4000:]
    failed = {task: state for task, state in states.items() if state not in ("success", "skipped")}
    assert runs and not failed, f"the city run failed: {runs} {failed}\n{output}"
    yield CityRun(env, summary, _step_results(xcoms), states, runs, done.returncode, output)


@pytest.fixture
def city_copy(built_city, tmp_path, monkeypatch):
    """A private copy of the built city's data root, which settings() points at for one test."""
    import shutil

    from citylake.config import settings

    env, _, _ = built_city
    root = tmp_path / "city"
    shutil.copytree(env.root, root, symlinks=True)
    monkeypatch.setenv("CITYLAKE_DATA_ROOT", str(root))
    settings.cache_clear()
    yield settings()[0]
    settings.cache_clear()
