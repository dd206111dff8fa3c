"""The whole city step by step, each step beside a bare Spark baseline; then one incremental day.

    .venv/bin/python benchmarks/bench_build.py --scale 1.0 [--root DIR] [--repeat 3] [--steps-only]

Prints, all in one process and one Spark session:
1. the whole city as `citylake run` does it (ingest and standardize every source, the silver gate
   inside standardize; build every gold table; its gate; publish), per step: wall seconds, Spark
   jobs and stages (the status tracker, one job group per step), files written under the lake,
   and the same step done bare right after it (read → transform → write with no gates, counts,
   ledger or manifests; a gate's bare pass is one aggregate over every column, publication's a
   DuckDB copy of each gold table), so each step's overhead is a ratio. Then the landing → gold
   total and the peak resident memory of the Spark driver JVM (sampled every 0.2 s);
2. incremental day: a delivery of the household register and of the business registry in which 1%
   of keys changed (new addresses, so silver keeps history), ingested, standardized by MERGE and
   the gold tables rebuilt; its share of the full build (target < 10%);
3. the naive way beside each, as ratios: the incremental day done by re-standardizing the whole
   extract and overwriting silver; GB 11643 validation of the register's ID numbers with a Python
   UDF calling python-stdnum, against the native Spark rules (median of --repeat runs each).
"""

from __future__ import annotations

import argparse
import contextlib
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


class StepMeter:
    """Wall seconds, Spark jobs and stages, and files written under the lake, of each step run
    in its `with meter.step(name)`: one Spark job group per step, read from the status tracker
    when the step ends (before the tracker's retained jobs roll over)."""

    def __init__(self, spark, lake_root: Path) -> None:
        self.context = spark.sparkContext
        self.tracker = self.context.statusTracker()
        self.lake_root = lake_root
        self.rows: dict[str, dict] = {}

    def _files(self) -> set[str]:
        return {os.path.join(d, f) for d, _, names in os.walk(self.lake_root) for f in names}

    @contextlib.contextmanager
    def step(self, name: str):
        before = self._files()
        self.context.setJobGroup(name, name)
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            jobs = self.tracker.getJobIdsForGroup(name)
            infos = [self.tracker.getJobInfo(j) for j in jobs]
            self.rows[name] = {
                "seconds": seconds,
                "jobs": len(jobs),
                "stages": sum(len(i.stageIds) for i in infos if i is not None),
                "files": len(self._files() - before),
            }
            self.context.setLocalProperty("spark.jobGroup.id", None)


def bare_steps(env, spark, lake, contracts, city, scratch: Path):
    """The bare Spark (or DuckDB) baseline of each kind of step, by step name."""
    from pyspark.sql import functions as F

    from base_libraries.builds import builder
    from citylake import catalogue, flow
    from citylake.lake import duckdb_connection, scan_of
    from pipelines import silver
    from pipelines.standardize import division_eras_frame

    def write(frame, name: str) -> None:
        frame.write.format("delta").mode("overwrite").save(str(scratch / name))

    def ingest(source_id: str):
        contract = contracts[source_id]
        if contract.format != "csv":
            return None  # Spark has no bare reader for a workbook or GeoJSON: no baseline
        encoding = "utf-8" if contract.encoding == "utf-8-sig" else contract.encoding
        folder = env.landing / contract.department / contract.source_name / DAY.isoformat()
        reader = spark.read.option("header", True).option("encoding", encoding)
        return lambda: write(
            reader.option("sep", contract.delimiter).csv(str(folder)), f"ingest_{source_id}"
        )

    def standardize(source_id: str):
        contract = contracts[source_id]

        def run() -> None:
            bronze = lake.read("bronze", source_id)
            eras = division_eras_frame(spark)
            standardized = silver.standardize(bronze, contract, city, eras, DAY)
            write(silver.accepted(standardized), f"standardize_{source_id}")

        return run

    def build(table: str):
        spec = catalogue.gold_table(table)

        def run() -> None:
            plan = flow.build_plan(lake, spec, DAY)
            write(builder(table)(flow.build_inputs(lake, spec, plan)), f"build_{table}")

        return run

    def quality(table: str):
        def run() -> None:
            frame = lake.read("gold", table)
            frame.select([F.count(F.col(f"`{c}`")) for c in frame.columns]).collect()

        return run

    def publish(_):
        def run() -> None:
            target = scratch / "serving_bare.duckdb"
            target.unlink(missing_ok=True)
            with duckdb_connection(str(target)) as con:
                for table in catalogue.GOLD_TABLES:
                    relation = scan_of(env, "gold", table.name)
                    if relation:
                        con.execute(f"CREATE TABLE {table.name} AS SELECT * FROM {relation}")

        return run

    return {"ingest": ingest, "standardize": standardize, "build": build, "quality": quality,
            "publish": publish}  # fmt: skip


def whole_city(env, spark, lake, contracts, city) -> tuple[dict, dict]:
    """The steps of `citylake run` in flow.run_city's order, each metered, each followed by its
    bare baseline metered the same way. Returns (steps, baselines) by step name."""
    from citylake import flow

    scratch = Path(tempfile.mkdtemp(prefix="bare-", dir=env.root))
    bare = bare_steps(env, spark, lake, contracts, city, scratch)
    steps, baselines = StepMeter(spark, env.lake_root), StepMeter(spark, scratch)

    def metered(kind: str, what, function, *args):
        name = f"{kind} {what}" if what else "publish serving"
        with steps.step(name):
            result = function(*args)
        baseline = bare[kind](what)
        if baseline is not None:
            with baselines.step(name):
                baseline()
        return result

    sources, tables = flow.city_plan()
    for source_id in sources:
        if metered("ingest", source_id, flow.ingest, source_id, DAY)["files"]:
            metered("standardize", source_id, flow.standardize, source_id, DAY)
    for table in tables:
        metered("build", table, flow.build, table, DAY)
    for table in tables:
        metered("quality", table, flow.check_quality, table)
    metered("publish", None, flow.publish, DAY)
    return steps.rows, baselines.rows


def print_steps(steps: dict, baselines: dict) -> None:
    print("\n| step | wall s | Spark jobs | stages | files | bare s | bare jobs | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in steps.items():
        base = baselines.get(name)
        cells = [name, f"{row['seconds']:.2f}", row["jobs"], row["stages"], row["files"]]
        if base:
            ratio = row["seconds"] / base["seconds"] if base["seconds"] else float("nan")
            cells += [f"{base['seconds']:.2f}", base["jobs"], f"{ratio:.2f}"]
        else:
            cells += ["—", "—", "—"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    for kind in ("ingest", "standardize", "build", "quality", "publish"):
        mine = [n for n in steps if n.startswith(kind)]
        total = sum(steps[n]["seconds"] for n in mine)
        bare = sum(baselines[n]["seconds"] for n in mine if n in baselines)
        compared = sum(steps[n]["seconds"] for n in mine if n in baselines)
        ratio = f"{compared / bare:.2f}" if bare else "—"
        print(
            f"  {kind:<12} {len(mine):3d} steps {total:8.1f} s   bare {bare:8.1f} s   ratio {ratio}"
        )
    total = sum(r["seconds"] for r in steps.values())
    bare = sum(r["seconds"] for r in baselines.values())
    print(f"  whole city   {len(steps):3d} steps {total:8.1f} s   bare {bare:8.1f} s")


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
    parser.add_argument("--steps-only", action="store_true", help="stop after the step table")
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

    # 1. The whole city, step by step, each beside its bare baseline.
    with PeakMemory() as memory:
        steps, baselines = whole_city(env, spark, lake, contracts, city)
    print(f"\nthe whole city at scale {args.scale}, step by step (data root {root})")
    print_steps(steps, baselines)
    full = sum(
        r["seconds"] for n, r in steps.items() if n.split()[0] in ("ingest", "standardize", "build")
    )
    rows = sum(lake.read("bronze", s).count() for s in flow.CITY["sources"])
    print(f"\nlanding → gold (ingest, standardize, build), scale {args.scale}: {full:.1f} s wall "
          f"({rows:,} rows delivered)")  # fmt: skip
    print(f"  peak driver JVM RSS {memory.peak / 2**30:.2f} GiB (baselines included)")
    if args.steps_only:
        return

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
