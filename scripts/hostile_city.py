"""The whole city over a landing zone holding every hostile case at once, each case checked.

    .venv/bin/python scripts/hostile_city.py [--work DIR] [--scale 0.002]

Writes the sample city for one day into a fresh data root, plants the hostile deliveries of
citylake/sample/hostile.py beside it, runs `citylake run` for that day in this process and then
checks, from the lake's own tables: each case's refusal or its rows' reason codes in quarantine,
and for every batch of the day delivered = bronze = accepted + quarantined. Prints one line per
case and exits 1 if anything disagrees.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.pop("CITYLAKE_SPARK_CONNECT", None)

DAY = dt.date(2026, 11, 27)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="data root to create (default: a temp folder)")
    parser.add_argument("--scale", type=float, default=0.002)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="citylake-hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["CITYLAKE_DATA_ROOT"] = str(work / "var")

    from rich.console import Console
    from rich.table import Table

    from citylake import flow
    from citylake.config import settings
    from citylake.sample import generate
    from citylake.sample.hostile import plant
    from pipelines import ops

    console = Console(width=max(Console().width, 140))
    env, city, contracts = settings()
    generate(env, city, contracts, scale=args.scale, seed=7, delivery_date=DAY, defect_rate=0.02)
    outside = work / "outside"
    outside.mkdir(exist_ok=True)
    cases = plant(env, contracts, DAY, outside)
    started = time.perf_counter()
    flow.run_city(DAY, progress=lambda step: console.log(step))
    console.log(f"citylake run {DAY}: {time.perf_counter() - started:.1f} s")

    lake = flow._lake()
    frame = lambda layer, name: lake.read(layer, name).toPandas()  # noqa: E731
    manifest = frame("ops", ops.MANIFEST)
    manifest = manifest[manifest["delivery_date"] == DAY]
    ledger = frame("ops", ops.LEDGER)
    refusals = frame("ops", ops.LANDING_REFUSALS)
    problems: list[str] = []
    table = Table(title=f"hostile deliveries, {DAY}")
    for column in ("case", "entry", "outcome", "reason codes (row: codes)", "ok"):
        table.add_column(column)
    quarantines: dict[str, object] = {}
    for case in cases:
        entry = case.entry.split("/", 3)[-1]
        if case.refused:
            codes = set(refusals[refusals["source_file"] == case.entry]["reason_code"])
            ok = codes == {case.refused}
            table.add_row(case.name, entry, f"refused: {', '.join(codes)}", "", _mark(ok))
            problems += [] if ok else [f"{case.entry}: refused {codes}, expected {case.refused}"]
            continue
        rows = manifest[manifest["source_file"] == case.entry]
        if case.skipped:
            ok = rows.empty  # the same content as another file of the day: no entry of its own
            table.add_row(case.name, entry, "skipped: same content", "", _mark(ok))
            problems += [] if ok else [f"{case.entry}: has a manifest entry of its own"]
            continue
        if len(rows) != 1:
            problems.append(f"{case.entry}: {len(rows)} manifest entries")
            table.add_row(case.name, entry, "not ingested", "", _mark(False))
            continue
        batch = rows.iloc[0]["batch_id"]
        if case.source_id not in quarantines:
            quarantines[case.source_id] = frame("quarantine", case.source_id)
        quarantine = quarantines[case.source_id]
        mine = quarantine[quarantine["_batch_id"] == batch]
        found = {int(r["_row_number"]): sorted(r["reason_codes"]) for _, r in mine.iterrows()}
        applied = ledger[ledger["batch_id"] == batch]
        accepted = int(applied["rows_accepted"].sum())
        ok = found == case.reasons and accepted == len(case.accepted)
        shown = "; ".join(f"{n}: {', '.join(c)}" for n, c in sorted(found.items()))
        outcome = f"{accepted} accepted, {len(found)} quarantined"
        table.add_row(case.name, entry, outcome, shown, _mark(ok))
        if not ok:
            problems.append(f"{case.entry}: {found} / {accepted} accepted, expected {case}")
    console.print(table)

    # Every batch of the day, every source: delivered = bronze = accepted + quarantined.
    batches = manifest[manifest["kind"] == "batch"]
    for _, entry in batches.iterrows():
        applied = ledger[ledger["batch_id"] == entry["batch_id"]]
        delivered, bronze = int(entry["rows_delivered"]), int(entry["rows_bronze"])
        if applied.empty:
            problems.append(f"{entry['source_file']}: batch never applied to silver")
            continue
        sums = int(applied.iloc[-1]["rows_accepted"]) + int(applied.iloc[-1]["rows_quarantined"])
        if not delivered == bronze == sums:
            problems.append(f"{entry['source_file']}: {delivered} delivered, {bronze} in bronze, "
                            f"{sums} accepted + quarantined")  # fmt: skip
    console.print(
        f"{len(batches)} batches of {DAY} from {batches['source_id'].nunique()} sources: "
        f"{int(batches['rows_delivered'].sum()):,} rows delivered, every one accounted for"
        if not problems
        else "[red]" + "\n".join(problems)
    )
    return 1 if problems else 0


def _mark(ok: bool) -> str:
    return "[green]✓" if ok else "[red]✗"


if __name__ == "__main__":
    sys.exit(main())
