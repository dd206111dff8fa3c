"""Parse time of each DAG file, as Airflow's dag-processor pays it: a fresh interpreter that has
already imported airflow.sdk executes the file. Medians over --repeat runs, wall and CPU time, and
the ratio to a baseline DAG file (one DAG, one task, no CityLake import) measured the same way, in
the same process.

    .venv/bin/python benchmarks/bench_dags.py --repeat 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = '''"""Baseline: one Airflow DAG, one task, nothing else imported."""
import datetime as dt
from airflow.sdk import DAG, task

with DAG(dag_id="baseline", schedule=None, start_date=dt.datetime(2026, 1, 1)) as dag:
    task(task_id="noop")(lambda: None)()
'''
PROBE = """
import importlib.util, json, sys, time
import airflow.sdk  # the dag-processor has it loaded before it parses a file
from airflow.sdk import DAG
path = sys.argv[1]
wall, cpu = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("dag_file", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
dags = [v for v in vars(module).values() if isinstance(v, DAG)]
print(json.dumps({"wall": wall, "cpu": cpu, "dags": len(dags),
                  "tasks": sum(len(d.tasks) for d in dags)}))
"""


def measure(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": ""},
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline_dag.py"
        baseline.write_text(BASELINE, encoding="utf-8")
        files = [baseline, *sorted((REPO / "dags").glob("citylake_*.py"))]
        runs: dict[Path, list[dict]] = {f: [] for f in files}
        for _ in range(args.repeat):  # interleaved, so a busy moment hits every file alike
            for path in files:
                runs[path].append(measure(path))
        base_wall = statistics.median(r["wall"] for r in runs[baseline])
        base_cpu = statistics.median(r["cpu"] for r in runs[baseline])
        print(
            f"DAG file parse time, median of {args.repeat} fresh interpreters (airflow.sdk loaded)"
        )
        print(
            f"{'file':<32}{'DAGs':>5}{'tasks':>7}{'wall s':>9}{'cpu s':>8}"
            f"{'wall/base':>11}{'cpu/base':>10}"
        )
        for path in files:
            wall = statistics.median(r["wall"] for r in runs[path])
            cpu = statistics.median(r["cpu"] for r in runs[path])
            last = runs[path][-1]
            name = "(baseline: 1 DAG, 1 task)" if path == baseline else path.name
            print(
                f"{name:<32}{last['dags']:>5}{last['tasks']:>7}{wall:>9.3f}{cpu:>8.3f}"
                f"{wall / base_wall:>11.1f}{cpu / base_cpu:>10.1f}"
            )


if __name__ == "__main__":
    main()
