"""Bronze ingest throughput of one source per delivery format, against a bare copy into Delta.

    .venv/bin/python benchmarks/bench_ingest.py --scale 1.0 [--repeat 3] [--formats csv,xlsx]

Prints, for the same file in the same process, alternating runs: CityLake's ingest (content hash,
strict decode and header match, row numbers, lineage, manifest, reconciliation) and the bare way of
getting that format into Delta (`spark.read.csv` / `.json` for text, the JSON reader and an
explode for GeoJSON, pandas.read_excel then createDataFrame for XLSX, which Spark cannot read);
their medians, rows/s and the overhead ratio. Also the start time of a fresh SparkSession (a new
JVM each time: median of subprocess runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.pop("CITYLAKE_SPARK_CONNECT", None)

DAY = dt.date(2026, 11, 27)
# One source per delivery format (the largest of each in the sample city).
SOURCES = {
    "csv": "gongan__household_register",
    "xlsx": "minzheng__social_organisations",
    "jsonl": "rexian__hotline_tickets",
    "geojson": "ziran__land_parcels",
}


def session_start_seconds(repeat: int) -> list[float]:
    code = (
        "import time; t = time.perf_counter(); from citylake.spark import get_spark; "
        "get_spark().range(1).count(); print(time.perf_counter() - t)"
    )
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return runs


def bare_copy(spark, contract, path: Path, target: Path) -> None:
    """The format into Delta the plain way: no checks, no lineage, no reconciliation."""
    from pyspark.sql import functions as F

    encoding = {"utf-8-sig": "utf-8"}.get(contract.encoding, contract.encoding)
    if contract.format == "csv":
        frame = spark.read.option("header", True).option("encoding", encoding).csv(str(path))
    elif contract.format == "jsonl":
        frame = spark.read.option("encoding", encoding).json(str(path))
    elif contract.format == "geojson":
        frame = (
            spark.read.option("multiLine", True)
            .json(str(path))
            .select(F.explode("features").alias("f"))
            .select("f.properties.*", F.to_json("f.geometry").alias("geometry"))
        )
    else:
        import pandas as pd

        frame = spark.createDataFrame(pd.read_excel(path, dtype=str, engine="openpyxl"))
    frame.write.format("delta").save(str(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default=",".join(SOURCES), help="csv,xlsx,jsonl,geojson")
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]

    root = Path(tempfile.mkdtemp(prefix="citylake-bench-"))
    os.environ["CITYLAKE_DATA_ROOT"] = str(root)
    from citylake.config import settings
    from citylake.lake import Lake
    from citylake.sample import generate
    from citylake.spark import get_spark
    from pipelines.ingest import delivery_dir, ingest_source

    env, city, contracts = settings()
    sources = [SOURCES[f] for f in formats]
    started = time.perf_counter()
    generate(env, city, contracts, scale=args.scale, seed=1, delivery_date=DAY, sources=sources)
    print(
        f"sample of {len(sources)} sources at scale {args.scale}: {time.perf_counter() - started:.1f} s"
    )

    starts = session_start_seconds(args.repeat)
    print(
        f"Spark session start (new JVM, median of {args.repeat}): "
        f"{statistics.median(starts):.2f} s  runs {[round(s, 2) for s in starts]}"
    )
    spark = get_spark(env)
    lake = Lake(env, spark)
    for fmt, source in zip(formats, sources, strict=True):
        contract = contracts[source]
        (path,) = sorted(delivery_dir(env, contract, DAY).glob("*"))
        baseline, ours, rows = [], [], 0
        for attempt in range(args.repeat + 1):  # attempt 0 warms the JVM up and is not counted
            target = root / "bare" / source / str(attempt)
            t = time.perf_counter()
            bare_copy(spark, contract, path, target)
            bare_seconds = time.perf_counter() - t

            shutil.rmtree(env.lake_root, ignore_errors=True)
            t = time.perf_counter()
            (result,), _ = ingest_source(lake, contract, DAY)
            ingest_seconds = time.perf_counter() - t
            rows = int(result["rows_bronze"])
            if attempt:
                baseline.append(bare_seconds)
                ours.append(ingest_seconds)
        bare, mine = statistics.median(baseline), statistics.median(ours)
        print(f"\n[{fmt}] {source}: {path.name}, {rows:,} rows, {path.stat().st_size / 1e6:.1f} MB")
        print(
            f"  bare copy → delta:        median {bare:.2f} s ({rows / bare:,.0f} rows/s)  "
            f"runs {[round(s, 2) for s in baseline]}"
        )
        print(
            f"  citylake ingest → bronze: median {mine:.2f} s ({rows / mine:,.0f} rows/s)  "
            f"runs {[round(s, 2) for s in ours]}"
        )
        print(f"  overhead ratio (ingest / bare): {mine / bare:.2f}  (target ≤ 1.3 for csv)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
