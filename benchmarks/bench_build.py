"""The base libraries' build: the full city from landing to gold, then one incremental day.

    .venv/bin/python benchmarks/bench_build.py --scale 1.0 [--root DIR] [--repeat 3]

Prints, all in one process and one Spark session:
1. full build: every source ingested and standardized, every gold table built (landing → gold),
   wall seconds and the peak resident memory of the Spark driver JVM (sampled every 0.2 s);
2. incremental day: a delivery of the household register and of the business registry in which 1%
   of keys changed (new addresses, so silver keeps history), ingested, standardized by MERGE and
   the gold tables rebuilt; its share of the full build (target < 10%);
3. the naive way beside each, as ratios: the incremental day done by re-standardizing the whole
   extract and overwriting silver; GB 11643 validation of the register's ID numbers with a Python
   UDF calling python-stdnum, against the native Spark rules (median of --repeat runs each).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.pop("CITYLAKE_SPARK_CONNECT", None)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._city import DAY, prepared_city  # noqa: E402

NEXT_DAY = DAY + dt.timedelta(days=1)
CHANGED_SOURCES = {
    "gongan__household_register": "住址",
    "shichang__business_registry": "住所（经营场所）",
}


class PeakMemory:
    """Peak RSS of the Spark driver JVM (the java child of this process), sampled in a thread."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = self._psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    if "java" in child.name():
                        self.peak = max(self.peak, child.memory_info().rss)
                except self._psutil.Error:
                    pass
            time.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def write_changed_delivery(env, contract, column_name: str, share: float) -> int:
    """Copy DAY's file to NEXT_DAY with `share` of its rows, their `column_name` changed."""
    column_header = contract.column(column_name).header
    (source,) = (env.landing / contract.department / contract.source_name / DAY.isoformat()).glob(
        "*.csv"
    )
    target = env.landing / contract.department / contract.source_name / NEXT_DAY.isoformat()
    target.mkdir(parents=True, exist_ok=True)
    with source.open(encoding=contract.encoding, newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    column = header.index(column_header)
    step = max(1, round(1 / share))
    changed = [row[:column] + [row[column] + "附1号"] + row[column + 1 :] for row in body[::step]]
    out = target / source.name.replace(DAY.strftime("%Y%m%d"), NEXT_DAY.strftime("%Y%m%d"))
    with out.open("w", encoding=contract.encoding, newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        writer.writerows(changed)
    return len(changed)


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--root", type=Path, help="data root (default: a new temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="citylake-build-"))
    os.environ["CITYLAKE_DATA_ROOT"] = str(root)
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from citylake import flow
    from citylake.config import settings
    from citylake.lake import Lake
    from citylake.spark import get_spark
    from pipelines import silver
    from pipelines.standardize import division_eras_frame, with_ric_checks

    env, city, contracts = settings()
    prepared_city(args.scale, day=DAY, standardized=False)  # this benchmark times the ingest
    spark = get_spark(env)
    spark.range(1).count()
    lake = Lake(env, spark)

    # 1. The full build, landing → gold.
    with PeakMemory() as memory:
        started = time.perf_counter()
        step_seconds = {}
        for source_id in flow.CITY["sources"]:
            step_seconds[f"ingest {source_id}"], _ = timed(flow.ingest, source_id, DAY)
            step_seconds[f"standardize {source_id}"], _ = timed(flow.standardize, source_id, DAY)
        for table in flow.CITY["tables"]:
            step_seconds[f"build {table}"], _ = timed(flow.build, table, DAY)
        full = time.perf_counter() - started
    rows = sum(lake.read("bronze", s).count() for s in flow.CITY["sources"])
    print(f"\nfull build landing → gold, scale {args.scale}: {full:.1f} s wall ({rows:,} rows)")
    print(f"  target < 900 s at scale 1.0; peak driver JVM RSS {memory.peak / 2**30:.2f} GiB")
    for name, seconds in sorted(step_seconds.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {seconds:7.1f} s  {name}")

    # 2. One incremental day: 1% of the keys of two sources changed.
    changed = {
        s: write_changed_delivery(env, contracts[s], column, 0.01)
        for s, column in CHANGED_SOURCES.items()
    }
    started = time.perf_counter()
    for source_id in CHANGED_SOURCES:
        flow.ingest(source_id, NEXT_DAY)
        flow.standardize(source_id, NEXT_DAY)
    affected = [
        t
        for t in flow.CITY["tables"]
        if t.startswith(("population__", "legal_entity__", "credit__", "licence__"))
    ]
    for table in affected:
        flow.build(table, NEXT_DAY)
    incremental = time.perf_counter() - started
    history = lake.read("silver", "person").where(~F.col("is_current")).count()
    print(
        f"\nincremental day ({', '.join(f'{s} {n:,} keys' for s, n in changed.items())}): "
        f"{incremental:.1f} s = {incremental / full:.1%} of the full build (target < 10%); "
        f"{history:,} earlier versions kept in silver.person"
    )

    # 3a. The naive incremental day: re-standardize the whole extract, overwrite silver.
    eras = division_eras_frame(spark)
    naive_started = time.perf_counter()
    for source_id in CHANGED_SOURCES:
        contract = contracts[source_id]
        bronze = lake.read("bronze", source_id)
        standardized = silver.standardize(bronze, contract, city, eras, NEXT_DAY)
        lake.overwrite(silver.accepted(standardized), "silver", f"naive_{contract.silver_table}")
    for table in affected:
        flow.build(table, NEXT_DAY)
    naive = time.perf_counter() - naive_started
    print(
        f"  naive (full re-standardize + overwrite): {naive:.1f} s; MERGE is {naive / incremental:.1f}x faster"
    )

    # 3b. GB 11643 validation: native rules vs a Python UDF over python-stdnum.
    ids = lake.read("bronze", "gongan__household_register").select("id_number").cache()
    ids.count()

    @F.udf(T.BooleanType())
    def stdnum_valid(number):
        from stdnum.cn import ric

        try:
            return bool(number) and ric.is_valid(number)
        except Exception:
            return False

    def native() -> int:
        checked = with_ric_checks(ids, "id_number", eras, F.lit(DAY))
        return checked.where(F.size("id_number_reasons") == 0).count()

    def udf() -> int:
        return ids.where(stdnum_valid("id_number")).count()

    native_runs, udf_runs = [], []
    for _ in range(args.repeat):
        seconds, _ = timed(native)
        native_runs.append(seconds)
        seconds, _ = timed(udf)
        udf_runs.append(seconds)
    n, u = statistics.median(native_runs), statistics.median(udf_runs)
    print(
        f"\nGB 11643 validation of {ids.count():,} ID numbers: native {n:.2f} s, "
        f"Python UDF (stdnum) {u:.2f} s (medians of {args.repeat}); native is {u / n:.1f}x faster"
    )
    print(f"\ndata root: {root}")


if __name__ == "__main__":
    main()
