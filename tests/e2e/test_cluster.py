"""The pipeline on a Spark standalone cluster (master and worker started by .ci/run), driven through
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
MASTER = os.environ.get("CITYLAKE_TEST_CLUSTER")
CLI = Path(sys.executable).parent / "citylake"


@pytest.mark.skipif(
    not MASTER,
    reason="no cluster: set CITYLAKE_TEST_CLUSTER=spark://host:port "
    "(.ci/run starts one with scripts/spark.sh cluster-start)",
)
def test_skeleton_runs_on_the_standalone_cluster(tmp_path):
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
