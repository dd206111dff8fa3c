"""`airflow dags test citylake_city <day>`: the city's whole chain, the real pipeline, one process.

The run is the session's `built_city` (tests/conftest.py): the sample city's deliveries in a
throw-away data root, a throw-away AIRFLOW_HOME with a migrated SQLite database, and no Airflow
service; `dags test` runs every task in-process. The end-to-end tests then inspect the city this
run built, so the whole chain runs once per test session, through Airflow.
"""

from __future__ import annotations

import pytest

from citylake.catalogue import GOLD_TABLES
from citylake.config import load_contracts

pytestmark = pytest.mark.airflow


def test_dags_test_runs_every_task_successfully(built_city):
    env, _, results = built_city
    states = built_city.states
    by_task = {r["step"].replace(" ", "_", 1): r for r in results}
    # A weekly or monthly source may rightly have delivered nothing that day; nothing else skips.
    not_daily = {s for s, c in load_contracts().items() if c.frequency != "daily"}
    may_skip = {f"{step}_{s}" for s in not_daily for step in ("ingest", "standardize")}
    unexpected = {
        task: state
        for task, state in states.items()
        if state != "success" and not (state == "skipped" and task in may_skip)
    }
    alerts = env.root / "log" / "alerts.log"
    assert states and unexpected == {}, (
        f"tasks not successful: {unexpected}\n"
        f"alerts: {alerts.read_text(encoding='utf-8') if alerts.exists() else '(none)'}"
    )
    assert built_city.runs == ["success"]
    assert built_city.returncode == 0, built_city.output
    # every catalogued gold table was built for that day, with rows, and its gate passed
    expected_tasks = {f"{step}_{t.name}" for t in GOLD_TABLES for step in ("build", "quality")}
    assert expected_tasks <= {t for t, s in states.items() if s == "success"}
    for table in GOLD_TABLES:
        assert by_task[f"build_{table.name}"]["rows"] > 0, table.name
        assert by_task[f"build_{table.name}"]["as_of"] == "2026-11-27", table.name
    # every source the landing zone holds for that day went through (none may skip here: the
    # sample city delivers every source on the delivery date)
    for source_id in load_contracts():
        assert states[f"standardize_{source_id}"] == "success", source_id
    assert "check_freshness" in states and states["check_freshness"] == "success"
    assert env.serving_file.is_file()
