"""The defect-catch table: the sample generator's planted defects against what catches them.

A sample city is written with `citylake sample`'s generator (its ground truth,
<data root>/sample/ground_truth.csv, names each defective row, column and kind), ingested and
standardized. Then, per defect kind: how many were injected, how many rows the quarantine
rejected, how many the bronze suite's expectations flagged (an expectation on the defect's column
listing the row among its unexpected rows: GX's COMPLETE result with _row_number as the index),
and how many neither caught. Clean rows flagged are counted too (false alarms), and
`fullwidth_digits` is a defect the pipeline repairs, so for it "caught" means wrongly rejected.
The quarantine is the baseline the expectations are compared with, in the same process.

    .venv/bin/python benchmarks/bench_defects.py --scale 0.01
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks._city import DAY, prepared_city  # noqa: E402

REPAIRED = {"fullwidth_digits"}
COMPLETE = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": ["_row_number"],
    "return_unexpected_index_query": False,
}


def flagged_rows(result) -> set[int]:
    stats = result.result or {}
    return {
        item["_row_number"]
        for item in stats.get("unexpected_index_list") or []
        if isinstance(item, dict) and item.get("_row_number") is not None
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--defect-rate", type=float, default=0.02)
    parser.add_argument("--data-root", type=Path, default=REPO / "var" / "bench" / "defects")
    args = parser.parse_args()
    os.environ["CITYLAKE_DATA_ROOT"] = str(args.data_root)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

    from pyspark.sql import functions as F

    from citylake.config import settings
    from citylake.lake import Lake
    from citylake.spark import get_spark
    from quality import suites, validation

    env, city, contracts = settings()
    prepared_city(args.scale, day=DAY, defect_rate=args.defect_rate)
    lake = Lake(env, get_spark(env))
    truth: dict[str, list[dict]] = defaultdict(list)
    with (env.sample_dir / "ground_truth.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            truth[row["source_id"]].append(row)

    injected, by_quarantine, by_expectations, missed = Counter(), Counter(), Counter(), Counter()
    false_quarantine = false_expectations = 0
    seconds = {"quarantine": 0.0, "expectations": 0.0}
    for source_id, contract in sorted(contracts.items()):
        started = time.perf_counter()
        rejected = {
            r[0] for r in lake.read("quarantine", source_id).select("_row_number").collect()
        }
        seconds["quarantine"] += time.perf_counter() - started
        started = time.perf_counter()
        suite = suites.suite_for("bronze", source_id, city, contracts, DAY)
        bronze = lake.read("bronze", source_id).where(F.col("_delivery_date") == DAY).persist()
        outcome = validation.run_suite(bronze, suite, COMPLETE)
        bronze.unpersist()
        seconds["expectations"] += time.perf_counter() - started
        by_column: dict[str, set[int]] = defaultdict(set)
        for result in outcome.results:
            kwargs = result.expectation_config.kwargs
            for column in validation._columns_of(kwargs):
                if column in contract.column_names:
                    by_column[column] |= flagged_rows(result)
        # Ground truth counts data rows; a workbook's _row_number is the sheet row (header = 1).
        offset = 1 if contract.format == "xlsx" else 0
        defective = {int(t["row_number"]) + offset for t in truth[source_id]}
        flagged_any = set().union(*by_column.values()) if by_column else set()
        false_quarantine += len(rejected - defective)
        false_expectations += len(flagged_any - defective)
        for t in truth[source_id]:
            kind, row, column = t["defect"], int(t["row_number"]) + offset, t["column"]
            injected[kind] += 1
            q = row in rejected
            e = row in by_column.get(column, set())
            by_quarantine[kind] += q
            by_expectations[kind] += e
            missed[kind] += not (q or e)

    print(f"scale {args.scale}, defect rate {args.defect_rate}: ground truth {env.sample_dir}")
    print()
    print("| defect kind | injected | caught by quarantine | caught by expectations | missed |")
    print("|---|---:|---:|---:|---:|")
    for kind in sorted(injected):
        note = " (repaired, not a rejection)" if kind in REPAIRED else ""
        print(
            f"| {kind}{note} | {injected[kind]} | {by_quarantine[kind]} | "
            f"{by_expectations[kind]} | {missed[kind]} |"
        )
    rejecting = [k for k in injected if k not in REPAIRED]
    total = sum(injected[k] for k in rejecting)
    print(
        f"| **all rejecting kinds** | {total} | {sum(by_quarantine[k] for k in rejecting)} | "
        f"{sum(by_expectations[k] for k in rejecting)} | {sum(missed[k] for k in rejecting)} |"
    )
    print()
    print(f"clean rows flagged: quarantine {false_quarantine}, expectations {false_expectations}")
    print(
        f"seconds: reading the quarantine {seconds['quarantine']:.1f}, bronze suites with "
        f"row indexes {seconds['expectations']:.1f}"
    )


if __name__ == "__main__":
    main()
