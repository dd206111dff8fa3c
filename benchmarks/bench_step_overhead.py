"""What a pipeline step costs when there is almost no data: the fixed cost every Airflow task pays.

At sample scale 0.002 (a few hundred rows per source) a step's time is Spark's and Delta's and
Great Expectations' own work, not the data's. This bench times the pieces a task is made of
(a quality gate on silver and on gold, a gold build, a 20-row Delta append) under Spark SQL
settings that matter for tiny jobs, interleaved in one session so that the machine's noise falls
on every variant alike. Prints the median seconds of each piece under each variant and the ratio
against the baseline (the settings in conf/).

    .venv/bin/python benchmarks/bench_step_overhead.py --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DAY = dt.date(2026, 11, 27)

# name -> Spark SQL settings changed at run time against the session's own (the baseline)
VARIANTS = {
    "baseline": {},
    "no whole-stage codegen": {"spark.sql.codegen.wholeStage": "false"},
    "no adaptive execution": {"spark.sql.adaptive.enabled": "false"},
    "no Delta checksum file": {"spark.databricks.delta.writeChecksumFile.enabled": "false"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.002)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-root", type=Path, default=REPO / "var" / "bench" / "overhead")
    args = parser.parse_args()
    os.environ["CITYLAKE_DATA_ROOT"] = str(args.data_root)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

    from citylake import flow
    from citylake.config import settings
    from citylake.lake import Lake
    from citylake.sample import generate
    from citylake.spark import get_spark
    from quality import runner, validation

    env, city, contracts = settings()
    marker = env.root / f".sample-{args.scale}"
    if not marker.exists():
        generate(env, city, contracts, scale=args.scale, seed=20261128, delivery_date=DAY)
        # What `citylake run --table population__person` does: its sources, the table, its gate.
        flow.run_city(DAY, tables=["population__person"])
        marker.touch()
    spark = get_spark(env)
    lake = Lake(env, spark)
    scratch = spark.createDataFrame([(n, f"row {n}") for n in range(20)], "n int, text string")

    def gate(layer: str, table: str):
        def run() -> None:
            with contextlib.suppress(validation.QualityGateFailed):  # timed all the same
                runner.check_table(lake, layer, table, DAY, again=True)  # not the verdict

        return run

    pieces = {
        "silver gate (silver.person)": gate("silver", "person"),
        "gold gate (gold.population__person)": gate("gold", "population__person"),
        "gold build (population__person)": lambda: flow.build(
            "population__person", DAY, force=True
        ),
        "Delta append of 20 rows": lambda: lake.append(scratch, "ops", "bench_append"),
    }
    for piece in pieces.values():  # warm-up: first use of each code path
        piece()

    defaults = {key: spark.conf.get(key, None) for v in VARIANTS.values() for key in v}
    times = {(p, v): [] for p in pieces for v in VARIANTS}
    for _ in range(args.repeats):
        for variant, conf in VARIANTS.items():
            for key, value in defaults.items():
                if value is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, value)
            for key, value in conf.items():
                spark.conf.set(key, value)
            for name, piece in pieces.items():
                started = time.perf_counter()
                piece()
                times[name, variant].append(time.perf_counter() - started)

    print(f"\nscale {args.scale}, median of {args.repeats} (seconds; ratio to baseline)\n")
    print("| piece | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---:|" * len(VARIANTS))
    for name in pieces:
        base = statistics.median(times[name, "baseline"])
        cells = []
        for variant in VARIANTS:
            median = statistics.median(times[name, variant])
            cells.append(
                f"{median:.2f}" + ("" if variant == "baseline" else f" ({median / base:.2f})")
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
