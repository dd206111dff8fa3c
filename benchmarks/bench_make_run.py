"""`make run` as a newcomer meets it: a clean clone of HEAD, then `make run` twice and `make stop`.

Prints the wall time of each run, the phases of the first (from the `[citylake mm:ss]` marks
run.sh prints), the city DAG's own time, and the second run against the first (the second finds
nothing new delivered and must not run the day again). The clone keeps no `.venv*`, `.cache` or
`var/`; the package caches of this machine (uv's, Maven's) are used, so a machine that never
downloaded the packages adds their download time to the first run.

    .venv/bin/python benchmarks/bench_make_run.py [--scale 0.05] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARK = re.compile(r"\[citylake (\d\d):(\d\d)\]\s+(.*)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def make(target: str, clone: Path, scale: str, log: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYLAKE_")}
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            ["make", target, f"SCALE={scale}"], cwd=clone, env=env, stdout=out, stderr=out
        )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"make {target} failed (exit {done.returncode}); see {log}")
    return seconds


def phases(log: Path) -> list[tuple[str, int]]:
    marks = []
    for line in ANSI.sub("", log.read_text(encoding="utf-8")).splitlines():
        found = MARK.search(line)
        if found:
            marks.append((found.group(3).strip(), int(found.group(1)) * 60 + int(found.group(2))))
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="0.05")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its logs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="citylake-make-run."))
    clone = work / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    try:
        first = make("run", clone, args.scale, work / "run1.log")
        second = make("run", clone, args.scale, work / "run2.log")
    finally:
        subprocess.run(["make", "stop"], cwd=clone, capture_output=True, check=False)
    text = ANSI.sub("", (work / "run1.log").read_text(encoding="utf-8"))
    city = re.search(r"citylake_city \S+: success in (\S+)", text)
    tasks = len(re.findall(r"^\s+[✓✗–] ", text, flags=re.MULTILINE))
    again = "nothing new delivered" in ANSI.sub("", (work / "run2.log").read_text("utf-8"))
    print(f"make run (first, SCALE={args.scale}, clean clone): {first:7.1f} s")
    marks = phases(work / "run1.log")
    for (name, at), (_, until) in zip(marks, [*marks[1:], ("end", round(first))], strict=True):
        print(f"    {until - at:5d} s  {name[:90]}")
    print(f"    city DAG run: {city.group(1) if city else '?'} for {tasks} tasks")
    print(f"make run (second, nothing new delivered: {again}): {second:7.1f} s")
    print(f"second / first: {second / first:.2f}")
    if args.keep:
        print(f"clone and logs: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
