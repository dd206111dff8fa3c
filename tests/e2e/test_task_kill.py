"""A task SIGKILLed in the middle of its Delta write leaves the table at its previous version, and
the retry (the same step run again, as Airflow's retry does) completes.

The killed task is a real process with its own Spark driver (JVM included, its own process group),
running the step an Airflow task runs: citylake.flow.build. It is killed once it has written data
files into the table's folder but before Delta committed them; readers must then see the previous
version, whole, and nothing of the half-written one.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.spark
REPO = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 11, 27)
TABLE = "population__person"
# Many small output files make the write last long enough to be caught in the middle of it.
SLOW_WRITE = {
    "spark.sql.shuffle.partitions": "48",
    "spark.default.parallelism": "48",
    "spark.sql.adaptive.coalescePartitions.enabled": "false",
}
BUILD = f"""
import datetime as dt
from citylake import flow
# force: the inputs did not change, and the point is a rebuild caught mid-write
print(flow.build({TABLE!r}, dt.date.fromisoformat({DAY.isoformat()!r}), force=True), flush=True)
"""


@pytest.fixture(scope="module")
def built_once(tmp_path_factory, spark):
    """The population sources of one small sample day, standardized, and gold built once."""
    from citylake import catalogue, flow
    from citylake.config import settings
    from citylake.sample import generate

    root = tmp_path_factory.mktemp("kill")
    patch = pytest.MonkeyPatch()
    patch.setenv("CITYLAKE_DATA_ROOT", str(root))
    settings.cache_clear()
    env, city, contracts = settings()
    sources = list(catalogue.gold_table(TABLE).sources)
    generate(env, city, contracts, scale=0.0015, seed=5, delivery_date=DAY, sources=sources)
    for source in sources:
        flow.ingest(source, DAY)
        flow.standardize(source, DAY)
    first = flow.build(TABLE, DAY)
    yield root, first
    patch.undo()
    settings.cache_clear()


def _conf_with_slow_writes(tmp: Path) -> Path:
    conf = tmp / "conf"
    shutil.copytree(REPO / "conf", conf)
    path = conf / "environments" / "local.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("spark", {})["extra"] = {**(data["spark"].get("extra") or {}), **SLOW_WRITE}
    data["spark"]["shuffle_partitions"] = int(SLOW_WRITE["spark.sql.shuffle.partitions"])
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return conf


def _commits(table: Path) -> set[str]:
    return {p.name for p in (table / "_delta_log").glob("*.json")}


def _data_files(table: Path) -> set[Path]:
    return set(table.rglob("*.parquet"))


def test_a_killed_write_leaves_the_previous_version_and_the_retry_completes(
    built_once, spark, tmp_path
):
    root, first = built_once
    table = root / "lake" / "gold" / TABLE
    commits, files = _commits(table), _data_files(table)
    before = spark.read.format("delta").load(str(table))
    rows_before = before.count()
    assert rows_before == first["rows"] > 0

    env = {
        **os.environ,
        "CITYLAKE_DATA_ROOT": str(root),
        "CITYLAKE_CONF_DIR": str(_conf_with_slow_writes(tmp_path)),
        "PYTHONPATH": str(REPO),
    }
    env.pop("CITYLAKE_SPARK_CONNECT", None)
    task = subprocess.Popen(
        [sys.executable, "-c", BUILD],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the JVM dies with it
    )
    killed_mid_write = False
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and task.poll() is None:
            new_files = _data_files(table) - files
            if new_files and _commits(table) == commits:
                os.killpg(task.pid, signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.02)
    finally:
        if task.poll() is None and not killed_mid_write:
            os.killpg(task.pid, signal.SIGKILL)
        output = task.communicate(timeout=60)[0].decode(errors="replace")
    assert killed_mid_write, f"the build finished before it could be killed:\n{output[-3000:]}"
    assert task.returncode == -signal.SIGKILL

    # Half-written files are on disk, but no commit names them: the table is as it was.
    assert _data_files(table) - files, "the kill came before any data file was written"
    assert _commits(table) == commits
    after = spark.read.format("delta").load(str(table))
    assert after.count() == rows_before
    assert after.exceptAll(before).count() == 0

    # The retry: the same step again (as Airflow's retry runs it) completes and commits one new
    # version; in this process, whose Spark is already up, to spare a second JVM start.
    from citylake import flow

    result = flow.build(TABLE, DAY, force=True)
    assert result["rows"] == rows_before
    assert len(_commits(table)) == len(commits) + 1
    rebuilt = spark.read.format("delta").load(str(table))
    assert rebuilt.count() == rows_before
    key = ["id_number"]
    assert rebuilt.select(*key).exceptAll(before.select(*key)).count() == 0
