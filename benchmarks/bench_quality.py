"""How much the quality gate costs: validating every gold table, as a share of building it.

A sample city (default SCALE 0.05) runs through ingest and standardize once; then each gold table
is built and checked (runner.check_table: one GX validation of its whole suite, results appended
to ops.quality_results, the masked result kept for Data Docs) `--repeats` times. Prints the median
build and validation seconds per table and the ratio validation / build, in total against the
target of 30%. The build in the same process is the baseline.

    .venv/bin/python benchmarks/bench_quality.py --scale 0.05 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks._city import DAY, prepared_city  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", type=Path, default=REPO / "var" / "bench" / "quality")
    args = parser.parse_args()
    os.environ["CITYLAKE_DATA_ROOT"] = str(args.data_root)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

    from citylake import catalogue, flow
    from citylake.config import settings
    from citylake.lake import Lake
    from citylake.spark import get_spark
    from quality import runner, suites, validation

    env, city, contracts = settings()
    import quality.expectations  # noqa: F401  (GX's import is paid once, before any timing)

    prepared_city(args.scale, day=DAY)
    lake = Lake(env, get_spark(env))

    rows = []
    for table in catalogue.build_order():
        builds, checks = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            built = flow.build(table.name, DAY)
            builds.append(time.perf_counter() - started)
            started = time.perf_counter()
            try:
                runner.check_table(lake, "gold", table.name, DAY)
            except validation.QualityGateFailed as failed:
                print(f"  (gate failed, timed all the same) {failed}".splitlines()[0])
            checks.append(time.perf_counter() - started)
        build, check = statistics.median(builds), statistics.median(checks)
        expectations = len(suites.suite_for("gold", table.name, city, contracts).expectations)
        rows.append((table.name, built["rows"], expectations, build, check))
        print(
            f"{table.name:28} {built['rows']:>9} rows  build {build:7.2f} s  "
            f"validate {check:7.2f} s  ({expectations} expectations)  {check / build:6.1%}"
        )

    total_build = sum(r[3] for r in rows)
    total_check = sum(r[4] for r in rows)
    print()
    print(
        f"| gold table | rows | expectations | build s (median of {args.repeats}) | "
        "validation s | validation / build |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, count, expectations, build, check in rows:
        print(
            f"| {name} | {count} | {expectations} | {build:.2f} | {check:.2f} | {check / build:.1%} |"
        )
    share = total_check / total_build
    print(f"| **all gold tables** | | | {total_build:.2f} | {total_check:.2f} | **{share:.1%}** |")
    print(
        f"\nscale {args.scale}: validation is {share:.1%} of build time "
        f"(target < 30%: {'met' if share < 0.30 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
