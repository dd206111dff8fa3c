"""Serving figures: time to publish, and every operations-dashboard chart query, p50 and p95.

Each chart of dashboards/bundle/dashboards/city_operations.yaml is turned into the SQL Superset
runs for it (its dataset's metric expressions, its group-by columns) and timed three ways in one
process:

- serving: against the published DuckDB file (what Superset reads; target p95 ≤ 200 ms);
- delta_scan: the same query where the marts are views over the gold Delta tables (DuckDB's delta
  extension), i.e. without publication.

(Spark SQL over the same tables is not measured yet: the marts use DuckDB SQL, spatial functions
included, that Spark does not speak.)

The gold tables come from the configured lake if every catalog table is built there
(`--lake`), otherwise from a synthetic city in the shape of gold (tests/browser/small_city.py,
sized so the register holds 2,000,000 × scale residents) that Spark writes as Delta into a
scratch data root.

    .venv/bin/python benchmarks/bench_serving.py --scale 0.05
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from citylake.catalogue import GOLD_TABLES  # noqa: E402
from citylake.lake import is_delta  # noqa: E402
from pipelines import publish  # noqa: E402
from pipelines.serving import build_serving  # noqa: E402

BUNDLE = REPO_ROOT / "dashboards" / "bundle"
RESIDENTS_AT_SCALE_1 = 2_000_000


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def chart_queries(slug: str = "city_operations") -> dict[str, str]:
    """slice name → the SQL Superset sends for the chart (aggregation as the chart defines it)."""
    datasets = {d["uuid"]: d for d in map(_yaml, (BUNDLE / "datasets").rglob("*.yaml"))}
    charts = {c["uuid"]: c for c in map(_yaml, (BUNDLE / "charts").glob("*.yaml"))}
    dashboard = _yaml(BUNDLE / "dashboards" / f"{slug}.yaml")
    queries = {}
    for node in dashboard["position"].values():
        if not (isinstance(node, dict) and node.get("type") == "CHART"):
            continue
        chart = charts[node["meta"]["uuid"]]
        dataset = datasets[chart["dataset_uuid"]]
        metrics = {m["metric_name"]: m["expression"] for m in dataset["metrics"]}
        p = chart["params"]
        table = dataset["table_name"]
        if p["viz_type"] == "table":
            order = ""
            if p.get("order_by_cols"):
                column, ascending = yaml.safe_load(p["order_by_cols"][0])
                order = f" ORDER BY {column} {'ASC' if ascending else 'DESC'}"
            sql = f"SELECT {', '.join(p['all_columns'])} FROM {table}{order} LIMIT {p['row_limit']}"
        else:
            names = p.get("metrics") or [p["metric"]]
            groups = [
                *([p["x_axis"]] if p.get("x_axis") else []),
                *p.get("groupby", []),
                *([p["line_column"]] if p.get("line_column") else []),
                *p.get("js_columns", []),
            ]
            select = [*groups, *(f"{metrics[m]} AS {m}" for m in names)]
            sql = f"SELECT {', '.join(select)} FROM {table}"
            if groups:
                sql += f" GROUP BY {', '.join(groups)} LIMIT {p.get('row_limit', 10000)}"
        queries[chart["slice_name"]] = sql
    return queries


def timed(run, repeat: int) -> list[float]:
    run()  # warm-up: first open of the file, extension load
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p50_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def synthetic_lake(scale: float, root: Path) -> tuple[int, float]:
    """A gold-shaped city written by Spark as Delta under root/lake, every gold version marked as
    having passed its gate; returns residents and seconds."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from browser.small_city import RESIDENTS_PER_DIVISION, make_small_city

    from citylake.config import load_city, load_contracts, settings
    from citylake.lake import Lake
    from citylake.spark import get_spark

    size = max(1, round(RESIDENTS_AT_SCALE_1 * scale / sum(RESIDENTS_PER_DIVISION.values())))
    started = time.perf_counter()
    small = make_small_city(load_city(), load_contracts(), size=size)
    small.write_parquet(root / "parquet")
    os.environ["CITYLAKE_DATA_ROOT"] = str(root)
    settings.cache_clear()
    env, _, _ = settings()
    spark = get_spark(env)
    lake = Lake(env, spark)
    for key in small.rows:
        layer, name = key.split("/")
        frame = spark.read.parquet(str(root / "parquet" / layer / f"{name}.parquet"))
        if key == "ops/quality_results":
            from pyspark.sql import functions as F

            frame = frame.withColumn("table_version", F.lit(0).cast("long"))
        lake.overwrite(frame, layer, name)
    return len(small.gold("population__person")), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--lake", action="store_true", help="use the configured lake's gold")
    parser.add_argument("--keep", type=Path, help="keep the scratch data root here")
    args = parser.parse_args()

    from citylake.config import settings

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="bench_serving_", dir=Path.home()))
    try:
        if args.lake:
            env, _, _ = settings()
            missing = [t.name for t in GOLD_TABLES if not is_delta(env.table_path("gold", t.name))]
            if missing:
                raise SystemExit(f"--lake: gold tables not built yet: {missing}")
            print(f"gold from the lake at {env.lake_root}")
        else:
            residents, seconds = synthetic_lake(args.scale, scratch)
            print(
                f"synthetic gold city: {residents:,} residents (scale {args.scale}), "
                f"written as Delta in {seconds:.1f} s"
            )
        env, city, contracts = settings()

        publish_runs = []
        for _ in range(3):  # each run builds both files anew and swaps them in
            started = time.perf_counter()
            summary = publish.publish(env, city, contracts)
            publish_runs.append(time.perf_counter() - started)
        size_mb = env.serving_file.stat().st_size / 1e6
        print(
            f"publish (masked + clear files, marts, health, atomic swap): median "
            f"{statistics.median(publish_runs):.2f} s over 3 runs; serving file {size_mb:.1f} MB; "
            f"{sum(summary['tables'].values()):,} gold rows"
        )

        queries = chart_queries()
        serving = duckdb.connect(str(env.serving_file), read_only=True)
        over_delta = duckdb.connect()
        build_serving(
            over_delta, publish.delta_scan(env), city, contracts,
            serving.execute("SELECT as_of FROM serving_info").fetchone()[0],
            publish.serving_pepper(env), materialize=False,
        )  # fmt: skip
        print(f"\n{len(queries)} chart queries of 城市运行综合指挥, {args.repeat} runs each (ms)")
        print(
            f"{'chart':<58} {'serving p50':>11} {'p95':>7} {'delta p50':>10} {'p95':>7} {'ratio':>6}"
        )
        worst = 0.0
        for name, sql in queries.items():
            s50, s95 = p50_p95(timed(lambda sql=sql: serving.execute(sql).fetchall(), args.repeat))
            d50, d95 = p50_p95(
                timed(lambda sql=sql: over_delta.execute(sql).fetchall(), max(3, args.repeat // 6))
            )
            worst = max(worst, s95)
            print(
                f"{name[:56]:<58} {s50:>11.1f} {s95:>7.1f} {d50:>10.1f} {d95:>7.1f} {d50 / s50:>6.0f}x"
            )
        verdict = "meets" if worst <= 200 else "MISSES"
        print(
            f"\nworst serving p95 {worst:.1f} ms: {verdict} the 200 ms target at scale {args.scale}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
