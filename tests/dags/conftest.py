"""Airflow for the DAG tests: a throw-away AIRFLOW_HOME, never the running instance's.

Airflow reads AIRFLOW_HOME and its configuration once, when it is first imported, so the variables
are set here, at collection time, before any test module imports airflow.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
VENV_BIN = Path(sys.executable).parent

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="citylake-airflow-test-"))
AIRFLOW_TEST_ENV = {
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(_AIRFLOW_HOME / "logs"),
    "GX_ANALYTICS_ENABLED": "false",
    "SPARK_LOCAL_IP": "127.0.0.1",
}
os.environ.update(AIRFLOW_TEST_ENV)
# A shell that sourced `scripts/airflow.sh env` must not point the tests at the real instance.
os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", None)


@pytest.fixture(scope="session", autouse=True)
def _remove_airflow_home():
    yield
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    # Airflow 3.3's DagBag has no include_examples; AIRFLOW__CORE__LOAD_EXAMPLES=False covers it.
    return DagBag(dag_folder=str(DAGS_FOLDER))
