"""The pipeline on a Spark standalone cluster (a master and a worker on 127.0.0.1, started here by
scripts/spark.sh cluster-start unless CITYLAKE_TEST_CLUSTER names one), driven through
the CLI as a user would: `citylake sample`, then `citylake run --table population__person` (the
population library and the four sources it is built from, its gate, the serving file). The whole
city's chain is proven once per session by tests/dags/test_dags_test.py; here the point is that the
same steps run unchanged when Spark is a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "citylake"


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    """The cluster's URL: CITYLAKE_TEST_CLUSTER's, or a master and a worker started for this
    module (their pid and log files under a throw-away data root) and stopped after it."""
    if os.environ.get("CITYLAKE_TEST_CLUSTER"):
        yield os.environ["CITYLAKE_TEST_CLUSTER"]
        return
    root = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "CITYLAKE_DATA_ROOT": str(root)}
    script = REPO / "scripts" / "spark.sh"
    subprocess.run([script, "cluster-start"], env=env, check=True, timeout=300)
    try:
        yield "spark://127.0.0.1:7077"
    finally:
        subprocess.run([script, "cluster-stop"], env=env, check=False, timeout=120)


def test_skeleton_runs_on_the_standalone_cluster(tmp_path, master):
    MASTER = master  # noqa: N806 - the name the assertions below read best with
    env = {**os.environ, "CITYLAKE_DATA_ROOT": str(tmp_path), "CITYLAKE_SPARK_MASTER": MASTER}
    env.pop("CITYLAKE_SPARK_CONNECT", None)
    date = ["--date", "2026-11-27"]
    subprocess.run([CLI, "sample", "--scale", "0.001", "--seed", "3", *date], env=env, check=True)
    run = subprocess.run(
        [CLI, "run", *date, "--table", "population__person"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"master {MASTER}" in run.stdout  # the run says where it ran
    with duckdb.connect(str(tmp_path / "serving" / "city.duckdb"), read_only=True) as con:
        served = con.execute("SELECT count(*) FROM population__person").fetchone()[0]
        licences = con.execute("SELECT count(*) FROM licence__licence").fetchone()[0]
    assert served > 1500
    assert licences == 0  # only what was asked for was built (the rest is published empty)
