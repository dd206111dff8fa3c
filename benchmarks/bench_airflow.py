"""End-to-end wall time of the city's day through the running stack, beside the same pipeline run
in-process by `citylake run`: the ratio is what Airflow costs (the issue's target: <= 1.2 at 1.0).

Both sides start from the same sample landing zone (one copy each) in a private data root under
--work, so nothing of a developer's var/ is touched:

  in-process  `citylake run --date D` in a fresh process (local Spark, its JVM start included)
  Airflow     one Spark Connect server, api-server, scheduler and dag-processor (LocalExecutor,
              SQLite) on free ports, started before the clock starts; the clock runs from the
              REST trigger of citylake_city for D to its success

    .venv/bin/python benchmarks/bench_airflow.py --scale 0.1

Each side runs --repeat times on a fresh copy of the landing zone (medians printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from citylake.config import city_yesterday

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCRIPTS = REPO / "scripts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list, env: dict, timeout: float = 7200) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(
            f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return seconds


def fresh_root(work: Path, name: str, landing: Path) -> Path:
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copytree(landing, root / "landing")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", type=Path, default=REPO / "var" / "bench_airflow")
    parser.add_argument(
        "--again",
        action="store_true",
        help="after the timed city run, `airflow-run --if-new` as a second make run does "
        "(nothing new delivered: no run at all) and print its time",
    )
    parser.add_argument(
        "--skip-in-process", action="store_true", help="only the run through Airflow"
    )
    args = parser.parse_args()
    # Yesterday in the city: the day the scheduler itself queues when the city DAG is unpaused.
    day = city_yesterday()
    work = args.work.resolve()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base_env.pop("CITYLAKE_SPARK_CONNECT", None)
    base_env |= {"SPARK_LOCAL_IP": "127.0.0.1", "GX_ANALYTICS_ENABLED": "false"}

    sample_root = work / "sample"
    if not (sample_root / "landing").is_dir():
        print(f"sample city at scale {args.scale} for {day} ...", flush=True)
        sample_env = {**base_env, "CITYLAKE_DATA_ROOT": str(sample_root)}
        command = [BIN / "citylake", "sample", "--scale", str(args.scale), "--seed", str(args.seed)]
        run([*command, "--date", day.isoformat()], sample_env)
    landing = sample_root / "landing"

    in_process = []
    for n in range(0 if args.skip_in_process else args.repeat):
        root = fresh_root(work, "in_process", landing)
        env = {**base_env, "CITYLAKE_DATA_ROOT": str(root)}
        seconds = run([BIN / "citylake", "run", "--date", day.isoformat()], env)
        in_process.append(seconds)
        print(f"in-process run {n + 1}: {seconds:.1f} s", flush=True)

    conf = work / "conf"
    shutil.rmtree(conf, ignore_errors=True)
    shutil.copytree(REPO / "conf", conf)
    airflow_port, connect_port = free_port(), free_port()
    local = conf / "environments" / "local.yaml"
    data = yaml.safe_load(local.read_text(encoding="utf-8"))
    data["services"] |= {"airflow_port": airflow_port, "spark_connect_port": connect_port}
    local.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    through_airflow = []
    for n in range(args.repeat):
        root = fresh_root(work, "airflow", landing)
        env = {
            **base_env,
            "CITYLAKE_ENV": "local",
            "CITYLAKE_DATA_ROOT": str(root),
            "CITYLAKE_CONF_DIR": str(conf),
            "CITYLAKE_SPARK_CONNECT_PORT": str(connect_port),
            "CITYLAKE_SPARK_CONNECT": f"sc://127.0.0.1:{connect_port}",
        }
        try:
            for command in ("connect-start",), ("init",), ("start",):
                script = SCRIPTS / (
                    "spark.sh" if command[0].startswith("connect") else "airflow.sh"
                )
                run([script, *command], env, timeout=900)
            trigger = [BIN / "citylake", "airflow-run", "--dag", "citylake_city"]
            seconds = run([*trigger, "--date", day.isoformat(), "--timeout", "7200"], env)
            if args.again:
                start = time.perf_counter()
                done = subprocess.run(
                    [BIN / "citylake", "airflow-run", "--if-new", "--date", day.isoformat()],
                    env=env,
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                )
                print(done.stdout, done.stderr[-3000:], flush=True)
                seconds_all = time.perf_counter() - start
                print(f"airflow-run --if-new (nothing new delivered): {seconds_all:.1f} s")
        finally:
            subprocess.run([SCRIPTS / "airflow.sh", "stop"], env=env, cwd=REPO, check=False)
            subprocess.run([SCRIPTS / "spark.sh", "connect-stop"], env=env, cwd=REPO, check=False)
        through_airflow.append(seconds)
        print(f"through Airflow run {n + 1}: {seconds:.1f} s", flush=True)

    if not in_process:
        print(f"\ncitylake_city through Airflow, scale {args.scale}: {through_airflow}")
        return
    base, stack = statistics.median(in_process), statistics.median(through_airflow)
    print(f"\ncity day {day}, scale {args.scale}, median of {args.repeat}")
    print(f"{'citylake run (in-process, baseline)':<44}{base:>9.1f} s{1.0:>8.2f}")
    print(
        f"{'citylake_city through Airflow + Spark Connect':<44}{stack:>9.1f} s{stack / base:>8.2f}"
    )


if __name__ == "__main__":
    main()
