"""Replay and backfill are exact. Three days of the population's deliveries (D, D+1, D+2: people
move, move back, re-deliveries of unchanged extracts), run in order then D again, and in another
lake D+1 before D: every silver and gold table identical, SCD2 history sound, gold as of D equal
to a lake that only ever saw D. Concurrent runs of one table wait for each other."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from citylake import catalogue
from citylake.config import CITY_TIMEZONE, load_contracts

pytestmark = pytest.mark.spark

D = dt.date(2026, 11, 25)
DAYS = [D, D + dt.timedelta(1), D + dt.timedelta(2)]
TABLES = ["population__person", "population__household"]
CONTRACTS = load_contracts()
REGISTER = "gongan__household_register"


# What a replay may not change, and what differs between two lakes by nature: when rows were
# taken in (lineage, not data).
def _landing_file(landing: Path, source_id: str, day: dt.date) -> Path:
    contract = CONTRACTS[source_id]
    folder = landing / contract.department / contract.source_name / day.isoformat()
    (path,) = [p for p in folder.iterdir() if p.is_file()]
    return path


def _deliver_three_days(landing: Path) -> dict[str, str]:
    """D as the sample city writes it; D+1 and D+2 from it: the register with addresses and
    households changed (every 7th person moves on D+1; on D+2 half of them move back and every
    11th moves), the other sources re-delivered unchanged. Returns {id_number: address on D+2}
    of the people who moved back."""
    from citylake.config import settings
    from citylake.sample import generate

    env, city, contracts = settings()
    sources = sorted({s for t in catalogue.with_inputs(TABLES) for s in t.sources})
    generate(env, city, contracts, scale=0.0005, seed=1125, delivery_date=D, sources=sources)
    register = _landing_file(landing, REGISTER, D)
    with register.open(encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    address = header.index("户籍地址")
    moved_back = {}
    day1 = [list(r) for r in rows]
    day2 = [list(r) for r in rows]
    for i in range(len(rows)):
        if i % 7 == 3:
            day1[i][address] = rows[i][address] + "（迁入新居）"
            day2[i][address] = rows[i][address] if i % 2 else rows[i][address] + "（再迁）"
            if i % 2:
                moved_back[rows[i][0]] = rows[i][address]
        if i % 11 == 5:
            day2[i][address] = rows[i][address] + "（D+2 迁）"
    for day, content in ((DAYS[1], day1), (DAYS[2], day2)):
        for source_id in sources:
            source = _landing_file(landing, source_id, D)
            target = (
                source.parent.parent
                / day.isoformat()
                / source.name.replace(f"{D:%Y%m%d}", f"{day:%Y%m%d}")
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            if source_id == REGISTER:
                with target.open("w", encoding="utf-8", newline="") as handle:
                    csv.writer(handle, quoting=csv.QUOTE_ALL).writerows([header, *content])
            else:
                shutil.copyfile(source, target)
    return moved_back


def _checksums(env) -> dict[str, tuple[int, str]]:
    """(rows, order-free digest of the rows) of every silver and gold table, lineage times
    excluded (`citylake checksums`)."""
    from citylake.lake import Lake

    return Lake(env).fingerprints()


def _run(day: dt.date) -> None:
    from citylake import flow

    flow.run_city(day, tables=TABLES)


@pytest.fixture(scope="module")
def three_days(tmp_path_factory):
    """Lake A: D, D+1, D+2 in order; its checksums then; then D replayed."""
    from citylake.config import settings

    root = tmp_path_factory.mktemp("replay")
    patch = pytest.MonkeyPatch()
    patch.setenv("CITYLAKE_DATA_ROOT", str(root / "a"))
    settings.cache_clear()
    try:
        env = settings()[0]
        moved_back = _deliver_three_days(env.landing)
        after = {}
        for day in DAYS:
            _run(day)
            after[day] = dt.datetime.now(ZoneInfo(CITY_TIMEZONE)).replace(tzinfo=None)
            time.sleep(1.1)  # commits of the next day come at least a second later
        straight = _checksums(env)
        served = (env.serving_file.stat().st_mtime_ns, env.serving_file.read_bytes())
        _run(D)  # the backfill the README promises reproduces D
        replayed = _checksums(env)
        yield {
            "root": root, "env": env, "straight": straight, "replayed": replayed,
            "moved_back": moved_back, "served": served, "after": after,
        }  # fmt: skip
    finally:
        patch.undo()
        settings.cache_clear()


@pytest.fixture
def use_root(monkeypatch):
    """Point settings() at a data root for one test, and back afterwards."""
    from citylake.config import settings

    def use(root: Path):
        monkeypatch.setenv("CITYLAKE_DATA_ROOT", str(root))
        settings.cache_clear()
        return settings()[0]

    yield use
    settings.cache_clear()


def _other_lake(three_days, name: str, days: list[dt.date], use_root):
    """A lake of its own over a copy of lake A's landing zone, fed the given days in order."""
    root = three_days["root"] / name
    shutil.copytree(three_days["env"].landing, root / "landing")
    env = use_root(root)
    for day in days:
        _run(day)
    return env


def test_replaying_an_earlier_day_changes_nothing(three_days):
    assert three_days["replayed"] == three_days["straight"]
    assert {"silver.person", "gold.population__person"} <= set(three_days["straight"])


def test_a_replay_with_nothing_new_leaves_the_serving_file_alone(three_days):
    env = three_days["env"]
    assert (env.serving_file.stat().st_mtime_ns, env.serving_file.read_bytes()) == three_days[
        "served"
    ]


def test_history_of_a_person_who_moved_and_moved_back(three_days, spark):
    """SCD2 values checked by hand: on D the first address, valid D → D+1; on D+1 the new
    address, valid D+1 → D+2; on D+2 the first address again, current, open-ended."""
    from citylake.lake import Lake

    env = three_days["env"]
    person, first_address = sorted(three_days["moved_back"].items())[0]
    history = (
        Lake(env, spark)
        .read("silver", "person")
        .where(f"id_number = '{person}'")
        .orderBy("valid_from")
        .select("address", "valid_from", "valid_to", "is_current")
        .collect()
    )
    assert [tuple(r) for r in history] == [
        (first_address, DAYS[0], DAYS[1], False),
        (first_address + "（迁入新居）", DAYS[1], DAYS[2], False),
        (first_address, DAYS[2], None, True),
    ]


def test_days_out_of_order_give_the_same_lake(three_days, use_root):
    env = _other_lake(three_days, "b", [DAYS[1], DAYS[0], DAYS[2]], use_root)
    assert _checksums(env) == three_days["straight"]


def test_gold_as_of_d_is_the_gold_of_a_lake_that_only_saw_d(three_days, use_root):
    from citylake.lake import Lake

    only_d = _other_lake(three_days, "c", [DAYS[0]], use_root)
    expected = {k: v for k, v in _checksums(only_d).items() if k.startswith("gold.")}
    # lake A's gold versions built as of D, read back by time travel
    lake = Lake(three_days["env"])
    for table in TABLES:
        versions = [
            v for v in range(lake.version("gold", table) + 1)
            if lake.metadata("gold", table, v).get("as_of") == D.isoformat()
        ]  # fmt: skip
        assert versions, table
        rows, digest = lake.fingerprint("gold", table, versions[-1])
        assert (rows, digest) == expected[f"gold.{table}"], table


def test_a_backfill_waits_while_a_later_day_holds_the_table(three_days, use_root):
    """A run of D while D+2's standardize holds silver.person is serialized, not interleaved:
    it waits for the lock, then finds its batches already in the ledger."""
    from citylake import flow, locks

    env = use_root(three_days["root"] / "a")
    before = _checksums(env)
    finished = threading.Event()
    outcome = {}

    def backfill():
        outcome["result"] = flow.standardize(REGISTER, D)
        finished.set()

    with locks.held(env, "silver.person"):
        worker = threading.Thread(target=backfill)
        worker.start()
        time.sleep(3.0)
        assert not finished.is_set()  # waiting for the later day to finish with the table
    worker.join(timeout=300)
    assert finished.is_set()
    assert outcome["result"]["unchanged"]
    assert _checksums(env) == before


def test_trace_as_of_reads_silver_as_it_stood_then(three_days, spark):
    from citylake.lake import Lake
    from pipelines.lineage import trace

    lake = Lake(three_days["env"], spark)
    person = sorted(three_days["moved_back"])[0]

    def silver_versions(as_of):
        hits = trace(lake, CONTRACTS, person, as_of)
        return sorted(h.version_info for h in hits if (h.layer, h.table) == ("silver", "person"))

    assert silver_versions(three_days["after"][DAYS[0]]) == ["valid 2026-11-25 → now (current)"]
    assert silver_versions(three_days["after"][DAYS[1]]) == [
        "valid 2026-11-25 → 2026-11-26",
        "valid 2026-11-26 → now (current)",
    ]
    assert silver_versions(None) == [
        "valid 2026-11-25 → 2026-11-26",
        "valid 2026-11-26 → 2026-11-27",
        "valid 2026-11-27 → now (current)",
    ]
    # before the first run, nothing existed
    assert trace(lake, CONTRACTS, person, dt.datetime(2026, 1, 1)) == []


def test_history_lists_one_gold_version_per_day(three_days, use_root):
    from typer.testing import CliRunner

    from citylake.cli import app

    use_root(three_days["root"] / "a")
    shown = CliRunner().invoke(app, ["history", "gold.population__person"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    rows = [line for line in shown.output.splitlines() if "│ " in line and "WRITE" in line]
    # built as of D, D+1 and D+2; the replay of D rebuilt nothing
    assert [line.split("│")[1].strip() for line in rows] == ["2", "1", "0"]


def _table_properties(path: Path) -> dict[str, str]:
    """The newest metaData action's configuration in a Delta log, read as JSON lines."""
    import json

    for commit in sorted((path / "_delta_log").glob("*.json"), reverse=True):
        for line in commit.read_text(encoding="utf-8").splitlines():
            action = json.loads(line)
            if "metaData" in action:
                return action["metaData"].get("configuration") or {}
    return {}


def test_tables_keep_a_year_of_history(three_days):
    """Every kind of table, Spark's and delta-rs', keeps log and files 400 days (conf/)."""
    env = three_days["env"]
    assert env.lake.retention_days == 400
    for layer, name in [
        ("bronze", REGISTER),
        ("silver", "person"),
        ("gold", "population__person"),
        ("ops", "silver_ledger"),
        ("ops", "ingest_manifest"),
    ]:
        properties = _table_properties(env.lake_root / layer / name)
        assert properties.get("delta.logRetentionDuration") == "interval 400 days", (layer, name)
        assert properties.get("delta.deletedFileRetentionDuration") == "interval 400 days"
