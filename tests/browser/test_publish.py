"""The serving files publish.py writes: masking, marts, health tables, the gate and the swap.

The small city's rows (tests/browser/small_city.py) are the oracle: every figure here is counted
from them in Python, not read back from DuckDB. One test runs the real publication over real Delta
tables written by Spark, with the quality gate and the atomic swap.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from citylake.catalogue import GOLD_TABLES
from citylake.config import load_city, load_contracts
from pipelines import publish, serving

from .small_city import AS_OF, SmallCity, expected, make_small_city


@pytest.fixture(scope="module")
def small() -> SmallCity:
    return make_small_city(load_city(), load_contracts())


@pytest.fixture(scope="module")
def served(small: SmallCity, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    small.publish(root, root / "serving" / "city.duckdb")
    return root / "serving"


def _query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _all_text(path: Path) -> set[str]:
    """Every text value in every table of a DuckDB file."""
    values: set[str] = set()
    with duckdb.connect(str(path), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR'"
        ).fetchall()
        for table, column in columns:
            rows = con.execute(f'SELECT DISTINCT "{column}" FROM "{table}"').fetchall()
            values |= {r[0] for r in rows if r[0] is not None}
    return values


def test_no_personal_data_in_clear_in_the_serving_file(small: SmallCity, served: Path) -> None:
    persons = small.gold("population__person")
    secrets = (
        {p["id_number"] for p in persons}
        | {p["name"] for p in persons}
        | {p["phone"] for p in persons if p["phone"]}
        | {p["address"] for p in persons}
    )
    text = _all_text(served / "city.duckdb")
    leaked = sorted(v for v in text if v in secrets or any(s in v for s in secrets if len(s) > 8))
    assert leaked == []
    # ... and all of it in the clear copy, which only the entitled roles reach.
    clear = _all_text(served / "restricted" / "city_clear.duckdb")
    assert {p["id_number"] for p in persons} <= clear


def test_masks_follow_the_agreed_patterns(small: SmallCity, served: Path) -> None:
    rows = _query(
        served / "city.duckdb",
        "SELECT id_number_masked, name_masked, phone_masked, address_masked "
        "FROM population__person ORDER BY id_number_masked",
    )
    persons = {
        p["id_number"][:4] + "*" * 10 + p["id_number"][-4:]: p
        for p in small.gold("population__person")
    }
    for id_masked, name, phone, address in rows:
        person = persons[id_masked]  # 4511**********123X
        assert re.fullmatch(r"\d{4}\*{10}[\dX]{4}", id_masked)
        assert name == person["name"][0] + "*" * (len(person["name"]) - 1)  # 张*
        if person["phone"]:
            assert phone == person["phone"][:3] + "****" + person["phone"][-4:]  # 138****5678
        assert person["address"].startswith(address)
        assert re.search(r"(镇|乡|街道)$", address), address  # cut to the township or street


def test_entities_stay_in_clear_persons_are_masked(small: SmallCity, served: Path) -> None:
    rows = _query(
        served / "city.duckdb",
        "SELECT licence_number, holder_type, holder_key_masked, holder_name_masked "
        "FROM licence__licence",
    )
    licences = {lc["licence_number"]: lc for lc in small.gold("licence__licence")}
    assert {t for _, t, _, _ in rows} == {"法人", "自然人"}
    for number, holder_type, key, name in rows:
        licence = licences[number]
        if holder_type == "法人":  # credit codes and entity names are public
            assert (key, name) == (licence["holder_key"], licence["holder_name"])
        else:
            assert key == licence["holder_key"][:4] + "*" * 10 + licence["holder_key"][-4:]
            assert name != licence["holder_name"] and name[0] == licence["holder_name"][0]


def test_keyed_hash_joins_without_revealing(small: SmallCity, served: Path) -> None:
    """The same person has the same id_number_key in every table; the key is no plain SHA-256."""
    person_keys = dict(
        _query(
            served / "city.duckdb", "SELECT id_number_masked, id_number_key FROM population__person"
        )
    )
    heads = _query(
        served / "city.duckdb",
        "SELECT h.head_id_number_key IN (SELECT id_number_key FROM population__person) "
        "FROM population__household h",
    )
    assert all(found for (found,) in heads)
    a_person = small.gold("population__person")[0]["id_number"]
    assert hashlib.sha256(a_person.encode()).hexdigest() not in person_keys.values()


@pytest.mark.parametrize("division", [None, "451102", "451121"])
def test_operations_mart_equals_the_rows(small: SmallCity, served: Path, division) -> None:
    figures = expected(small, division)
    where = f"WHERE division_code = '{division}'" if division else ""
    columns = [c for c in figures if c != "satisfied_evaluations"] + ["satisfied_evaluations"]
    [row] = _query(
        served / "city.duckdb",
        f"SELECT {', '.join(f'sum({c})::BIGINT' for c in columns)} FROM mart_division_kpi {where}",
    )
    assert dict(zip(columns, row, strict=True)) == figures


def test_monthly_marts_add_up_to_the_rows(small: SmallCity, served: Path) -> None:
    cases = small.gold("service__case")
    by_department = Counter(c["department"] for c in cases)
    overdue = Counter(c["department"] for c in cases if c["is_overdue"])
    rows = _query(
        served / "city.duckdb",
        "SELECT department, sum(cases), sum(overdue_cases) FROM mart_service_monthly GROUP BY 1",
    )
    assert {d: (n, o) for d, n, o in rows} == {
        d: (by_department[d], overdue[d]) for d in by_department
    }
    tickets = Counter(
        (t["category"], t["division_name"]) for t in small.gold("service__hotline_ticket")
    )
    rows = _query(
        served / "city.duckdb",
        "SELECT category, division_name, sum(tickets) FROM mart_hotline_monthly GROUP BY ALL",
    )
    assert {(c, d): n for c, d, n in rows} == dict(tickets)


def test_map_has_every_division_with_its_real_boundary(served: Path) -> None:
    from shapely.geometry import Polygon

    rows = _query(
        served / "city.duckdb",
        "SELECT division_code, boundary_json, residents FROM mart_division_map "
        "WHERE polygon_number = 1 ORDER BY division_code",
    )
    assert [r[0] for r in rows] == [d.code for d in load_city().divisions]
    import json

    for code, boundary, _ in rows:
        ring = Polygon(json.loads(boundary))
        assert ring.is_valid and ring.area > 0.05, code  # a county is > ~500 km² (0.05 deg²)
        lon, lat = ring.centroid.x, ring.centroid.y
        assert 110.5 < lon < 112.5 and 23.5 < lat < 25.5, (code, lon, lat)  # Hezhou


def test_health_tables_report_freshness_quarantine_and_gate(small: SmallCity, served: Path) -> None:
    from quality.freshness import freshness

    contracts = small.contracts
    last = {}
    for m in small.rows["ops/ingest_manifest"]:
        last[m["source_id"]] = max(last.get(m["source_id"], m["delivery_date"]), m["delivery_date"])
    standing = {f.source_id: f for f in freshness(contracts, last, AS_OF)}  # `citylake freshness`
    late = {s for s, f in standing.items() if f.overdue}
    rows = _query(
        served / "city.duckdb",
        "SELECT source_id, is_fresh, freshness, due_by FROM health_source_freshness",
    )
    assert {s for s, fresh, _, _ in rows if not fresh} == late  # one rule, both places
    assert {s: due for s, _, _, due in rows} == {s: f.due_by for s, f in standing.items()}
    assert len(rows) == len(contracts)
    assert {f for s, _, f, _ in rows if s in late} <= {"延迟 late", "未交付 never delivered"}

    reasons = Counter(
        (key.split("/")[1], code)
        for key, table in small.rows.items()
        if key.startswith("quarantine/")
        for row in table
        for code in row["reason_codes"]
    )
    rows = _query(
        served / "city.duckdb",
        "SELECT source_id, reason_code, sum(rows), bool_and(reason_zh IS NOT NULL) "
        "FROM health_quarantine GROUP BY 1, 2",
    )
    assert {(s, c): n for s, c, n, _ in rows} == dict(reasons)
    assert all(named for *_, named in rows), "every reason code has its Chinese text"

    gate = dict(_query(served / "city.duckdb", "SELECT table_name, gate FROM health_quality_gate"))
    assert set(gate) == {t.name for t in GOLD_TABLES}
    assert set(gate.values()) == {"通过 passed"}


def test_a_gold_table_missing_a_catalog_column_is_named(small: SmallCity, tmp_path: Path) -> None:
    scan = small.write_parquet(tmp_path / "lake")
    person = tmp_path / "lake" / "gold" / "population__person.parquet"
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * EXCLUDE (phone) FROM read_parquet('{person}')) "
            f"TO '{tmp_path / 'p.parquet'}' (FORMAT parquet)"
        )
    (tmp_path / "p.parquet").replace(person)
    with (
        duckdb.connect() as con,
        pytest.raises(serving.GoldSchemaMismatch, match=r"population__person lacks \['phone'\]"),
    ):
        serving.build_serving(con, scan, small.city, small.contracts, AS_OF, "pepper")


@pytest.mark.spark
def test_publish_over_delta_keeps_the_gate_and_swaps_atomically(
    small: SmallCity, spark, data_root: Path
) -> None:
    """Real Delta tables written by Spark, ops.quality_results saying which versions passed."""
    from citylake.config import settings
    from citylake.lake import Lake

    env, city, contracts = settings()
    lake = Lake(env, spark)
    parquet = small.write_parquet(data_root / "parquet")
    del parquet
    for key in small.rows:
        layer, name = key.split("/")
        frame = spark.read.parquet(str(data_root / "parquet" / layer / f"{name}.parquet"))
        if key == "ops/quality_results":
            continue
        lake.overwrite(frame, layer, name)
    results = spark.read.parquet(str(data_root / "parquet" / "ops" / "quality_results.parquet"))
    # every gold table is at version 0 now: a passing run for version 0 of each
    from pyspark.sql import functions as F

    lake.overwrite(
        results.withColumn("table_version", F.lit(0).cast("long")), "ops", "quality_results"
    )

    summary = publish.publish(env, city, contracts, as_of=AS_OF)
    assert summary["missing"] == []
    assert summary["tables"]["population__person"] == len(small.gold("population__person"))
    [row] = _query(env.serving_file, "SELECT sum(residents) FROM mart_division_kpi")
    assert row[0] == expected(small)["residents"]
    assert oct(publish.restricted_file(env).stat().st_mode)[-3:] == "600"
    assert oct(publish.restricted_file(env).parent.stat().st_mode)[-3:] == "700"

    # DuckDB straight over the Delta tables, as an analyst would (lake_connection)
    with publish.lake_connection(env) as con:
        (persons,) = con.execute("SELECT count(*) FROM gold.population__person").fetchone()
    assert persons == len(small.gold("population__person"))

    # A new gold version not gated yet is no error: version 0, gated, stays served and nothing
    # is rebuilt; the new version waits for its own gate.
    before = env.serving_file.read_bytes(), publish.restricted_file(env).read_bytes()
    lake.append(lake.read("gold", "service__case").limit(1), "gold", "service__case")
    waiting = publish.publish(env, city, contracts, as_of=AS_OF)
    assert waiting["skipped"] and waiting["versions"]["service__case"] == 0
    assert (env.serving_file.read_bytes(), publish.restricted_file(env).read_bytes()) == before
    # A table of which no version ever passed blocks publication, and the files stay as they are.
    others = lake.read("ops", "quality_results").where("table_name != 'licence__licence'")
    lake.overwrite(others.localCheckpoint(), "ops", "quality_results")
    with pytest.raises(publish.PublicationBlocked, match=r"gold.licence__licence: no version"):
        publish.publish(env, city, contracts, as_of=AS_OF)
    assert (env.serving_file.read_bytes(), publish.restricted_file(env).read_bytes()) == before
    assert not list(env.serving_file.parent.glob(".*.building"))
    assert (
        dt.date.fromisoformat(str(_query(env.serving_file, "SELECT as_of FROM serving_info")[0][0]))
        == AS_OF
    )
