"""Time of a no-op bootstrap (what `make run` pays on every start once the environments exist).

.venv/bin/python benchmarks/bench_bootstrap.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    subprocess.run([REPO / "scripts" / "bootstrap.sh"], check=True, capture_output=True)
    runs = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        subprocess.run([REPO / "scripts" / "bootstrap.sh"], check=True, capture_output=True)
        runs.append(time.perf_counter() - started)
    print(
        f"no-op bootstrap: median {statistics.median(runs):.3f} s over {args.repeat} runs "
        f"{[round(r, 3) for r in runs]}"
    )


if __name__ == "__main__":
    main()
