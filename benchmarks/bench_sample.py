"""Time the sample city generator: wall time, rows and rows/s per source, peak memory.

    .venv/bin/python benchmarks/bench_sample.py [SCALE] [--seed N] [--keep DIR]

SCALE defaults to 1.0, the whole city (about 2,000,000 residents). Files go to a temporary data
root that is removed afterwards unless --keep names a directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from citylake.config import load_city, load_contracts, load_environment
from citylake.sample import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scale", nargs="?", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write here and keep the files")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="citylake-bench-"))
    env = load_environment().model_copy(update={"data_root": root.resolve()})
    started: dict[str, float] = {}
    finished: dict[str, float] = {}

    def progress(source_id: str, done: int, total: int) -> None:
        started.setdefault(source_id, time.perf_counter())
        finished[source_id] = time.perf_counter()

    # Each source's clock starts when the previous one stops (a chunk's work precedes its call).
    begin = time.perf_counter()
    try:
        summary = generate(
            env,
            load_city(),
            load_contracts(),
            scale=args.scale,
            seed=args.seed,
            delivery_date=dt.date(2026, 11, 27),
            progress=progress,
        )
        wall = time.perf_counter() - begin
        print(
            f"scale {args.scale}, seed {args.seed}: {summary.total_rows:,} rows in {wall:.1f} s "
            f"({summary.total_rows / wall:,.0f} rows/s)"
        )
        print(f"{'source':34} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'MB':>8}")
        previous_end = begin
        for source_id, written in summary.files.items():
            seconds = finished.get(source_id, previous_end) - previous_end
            previous_end = finished.get(source_id, previous_end)
            megabytes = written.path.stat().st_size / 1e6
            rate = written.rows / seconds if seconds > 0 else float("inf")
            print(
                f"{source_id:34} {written.rows:>10,} {seconds:>8.1f} {rate:>10,.0f} {megabytes:>8.1f}"
            )
        # ru_maxrss is in kilobytes on Linux.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {peak:,.0f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
