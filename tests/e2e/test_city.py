"""The whole sample city end to end, in-process, at a tiny scale (fixture `built_city`): every
department's extract → bronze → silver + quarantine → the gold base libraries → quality gates →
the serving file. Counts reconcile at every hop, the generator's ground truth is caught, lineage
reaches gold, and a rerun changes nothing."""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict

import duckdb
import pytest
from pyspark.sql import functions as F

from citylake import catalogue
from citylake.config import load_contracts

pytestmark = pytest.mark.spark
CONTRACTS = load_contracts()
DAY = dt.date(2026, 11, 27)  # the delivery date of the built_city fixture (tests/conftest.py)
# Defects the rules repair rather than reject (全角 digits become half-width).
REPAIRED = {"fullwidth_digits"}


def _lake(spark, env):
    from citylake.lake import Lake

    return Lake(env, spark)


def ground_truth(env) -> dict[str, list[dict]]:
    by_source: dict[str, list[dict]] = defaultdict(list)
    with (env.sample_dir / "ground_truth.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            by_source[row["source_id"]].append(row)
    return by_source


def test_every_delivered_row_is_in_silver_or_quarantine(built_city, spark):
    env, summary, results = built_city
    lake = _lake(spark, env)
    standardized = {r["source_id"]: r for r in results if r["step"].startswith("standardize")}
    assert set(standardized) == set(CONTRACTS)
    for source_id, delivered_file in summary.files.items():
        bronze = lake.read("bronze", source_id).count()
        quarantine = lake.read("quarantine", source_id).count()
        (batch,) = standardized[source_id]["batches"]
        assert bronze == delivered_file.rows, source_id
        assert batch["delivered"] == bronze == batch["accepted"] + batch["quarantined"], source_id
        assert batch["quarantined"] == quarantine, source_id
        silver = lake.read("silver", CONTRACTS[source_id].silver_table)
        if "is_current" in silver.columns:
            silver = silver.where("is_current")
        assert silver.count() == batch["accepted"], source_id


def test_injected_defects_are_caught_and_clean_rows_are_not(built_city, spark):
    """Against the generator's ground truth, source by source: every rejecting defect caught at
    its row, full-width digits repaired (not rejected), and no clean row quarantined."""
    env, _, _ = built_city
    lake = _lake(spark, env)
    truth = ground_truth(env)
    assert set(truth) >= {"gongan__household_register", "xinyong__credit_records"}
    for source_id in CONTRACTS:
        quarantined = {
            r[0] for r in lake.read("quarantine", source_id).select("_row_number").collect()
        }
        rows = truth.get(source_id, [])
        # The ground truth counts data rows; a workbook's _row_number is the sheet's own row
        # (the header is row 1), which is what a clerk opening the file sees.
        offset = 1 if CONTRACTS[source_id].format == "xlsx" else 0
        rejecting = {int(t["row_number"]) + offset for t in rows if t["defect"] not in REPAIRED}
        repaired = {int(t["row_number"]) + offset for t in rows if t["defect"] in REPAIRED}
        assert rejecting - quarantined == set(), f"{source_id}: defects missed"
        assert quarantined - rejecting == set(), f"{source_id}: clean rows quarantined"
        assert not repaired & quarantined, f"{source_id}: repairable rows quarantined"


def test_every_gold_table_is_built_with_its_columns_and_lineage(built_city, spark):
    env, _, _ = built_city
    lake = _lake(spark, env)
    for table in catalogue.GOLD_TABLES:
        gold = lake.read("gold", table.name)
        assert gold.columns == table.column_names, table.name
        counts = gold.agg(
            F.count("*"),
            F.count_distinct(*table.key),
            F.sum(F.col("_source_file").isNull().cast("int")),
            F.sum(F.col("_batch_id").isNull().cast("int")),
        ).first()
        assert counts[0] > 0, f"gold.{table.name} is empty"
        assert counts[1] == counts[0], f"gold.{table.name}: key {table.key} not unique"
        assert (counts[2], counts[3]) == (0, 0), f"gold.{table.name}: rows without lineage"


def test_cross_library_links_are_measured(built_city, spark):
    env, _, results = built_city
    (measured,) = [r for r in results if r["step"] == "publish serving"]
    shares = measured["integrity"]
    assert set(shares) >= {"licence_holder", "credit_subject", "entity_representative"}
    for check, figure in shares.items():
        assert 0 < figure["resolved"] <= figure["total"], check
    stored = _lake(spark, env).read("ops", "integrity").count()
    assert stored == len(shares)


def test_the_serving_file_holds_gold_without_personal_data_in_clear(built_city, spark):
    env, _, _ = built_city
    gold = _lake(spark, env).read("gold", "population__person").count()
    with duckdb.connect(str(env.serving_file), read_only=True) as con:
        served = con.execute("SELECT count(*) FROM population__person").fetchone()[0]
        by_district = dict(
            con.execute(
                "SELECT division_name, count(*) FROM population__person GROUP BY 1"
            ).fetchall()
        )
        leaked = con.execute(
            "SELECT count(*) FROM population__person WHERE "
            "regexp_matches(id_number_masked, '^\\d{17}[\\dX]$')"
        ).fetchone()[0]
    assert served == gold
    assert set(by_district) == {"八步区", "平桂区", "昭平县", "钟山县", "富川瑶族自治县"}
    assert leaked == 0


def test_the_catalogue_is_the_one_list_of_columns_types_and_masks(built_city):
    """No second list: every catalogue column reaches the serving file with its declared type
    (a personal one only masked, as <column>_masked, and an ID number with its <column>_key),
    every masked column there is a personal column of the catalogue, and the clear copy holds
    every column with its declared type plus each personal column's stored mask
    (<column>__masked) and nothing else. Gold as built by Spark, read by DuckDB."""
    from pipelines.publish import restricted_file

    env, _, _ = built_city

    def types(path) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = defaultdict(dict)
        with duckdb.connect(str(path), read_only=True) as con:
            for table, column, kind in con.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
            ).fetchall():
                found[table][column] = kind
        return found

    served, clear = types(env.serving_file), types(restricted_file(env))
    for table in catalogue.GOLD_TABLES:
        personal = table.personal
        expected = {}
        for column, declared in table.column_types.items():
            if column not in personal:
                expected[column] = declared
                continue
            expected[f"{column}_masked"] = "VARCHAR"
            if personal[column].kind == "id_number":
                expected[f"{column}_key"] = "VARCHAR"
        assert served[table.name] == expected, table.name
        masked = {c.removesuffix("_masked") for c in served[table.name] if c.endswith("_masked")}
        assert masked == set(personal), table.name
        stored = {f"{column}{catalogue.STORED_MASK}": "VARCHAR" for column in personal}
        assert clear[table.name] == {**table.column_types, **stored}, table.name
        # a personal column of a contract stays personal, of its kind, where gold carries it
        own = {c.name for c in table.columns}
        for source_id in table.sources:
            for column in CONTRACTS[source_id].columns:
                if column.pii and column.name in own:
                    assert personal[column.name].kind == column.pii, (table.name, column.name)


def test_trace_finds_a_person_file_by_file(built_city, spark):
    from pipelines.lineage import trace

    env, _, _ = built_city
    lake = _lake(spark, env)
    someone = (
        lake.read("gold", "legal_entity__entity")
        .where("legal_representative_resolved")
        .select("legal_representative_id_number")
        .first()[0]
    )
    hits = trace(lake, CONTRACTS, someone)
    places = {(h.layer, h.table) for h in hits}
    assert ("silver", "person") in places
    assert ("gold", "population__person") in places
    assert ("gold", "legal_entity__entity") in places
    register = [h for h in hits if h.table == "person"]
    assert all(h.source_file and h.source_file.endswith(".csv") for h in register)
    assert all(h.row_number and h.row_number > 0 for h in register)


def test_rerun_of_the_same_date_changes_nothing(city_copy, spark):
    from citylake import flow

    lake = _lake(spark, city_copy)
    source = "gongan__household_register"
    before = lake.version("bronze", source), lake.read("bronze", source).count()
    again = flow.ingest(source, DAY)
    assert [f["skipped"] for f in again["files"]] == [True]
    assert (lake.version("bronze", source), lake.read("bronze", source).count()) == before


def test_failed_hard_gate_leaves_the_serving_file_untouched(city_copy, spark):
    from citylake import flow
    from quality.validation import QualityGateFailed

    lake = _lake(spark, city_copy)
    passed = lake.version("gold", "population__person")

    def served_people() -> tuple[int, int]:
        with duckdb.connect(str(city_copy.serving_file), read_only=True) as con:
            return con.execute(
                "SELECT count(*), count(DISTINCT id_number_key) FROM population__person"
            ).fetchone()

    people = served_people()
    # A duplicate person breaks the hard uniqueness expectation on id_number.
    lake.append(lake.read("gold", "population__person").limit(1), "gold", "population__person")
    with pytest.raises(QualityGateFailed, match=r"id_number"):
        flow.check_quality("population__person")
    # The failed version is never served: the last version that passed stays; the new file
    # differs only in what the data-health dashboard says (the failed gate).
    summary = flow.publish()
    assert summary["versions"]["population__person"] == passed
    assert served_people() == people and people[0] == people[1]
    with duckdb.connect(str(city_copy.serving_file), read_only=True) as con:
        failed = con.execute(
            "SELECT count(*) FROM health_quality_results WHERE NOT success AND severity = 'hard'"
            " AND table_name = 'population__person'"
        ).fetchone()[0]
    assert failed >= 1

    # Mended (the passed version restored as a new one), gated and served: the failed version
    # in between is never among those Delta Sharing may read.
    lake.restore("gold", "population__person", passed)
    flow.check_quality("population__person")
    mended = lake.version("gold", "population__person")
    assert flow.publish()["versions"]["population__person"] == mended == passed + 2
    with duckdb.connect(str(city_copy.serving_file), read_only=True) as con:
        readable = {
            v
            for (v,) in con.execute(
                "SELECT gold_version FROM serving_versions WHERE table_name = 'population__person'"
            ).fetchall()
        }
    assert {passed, mended} <= readable and passed + 1 not in readable
