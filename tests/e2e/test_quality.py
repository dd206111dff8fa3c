"""Quality on the real sample city: every suite runs on its table, the bronze checks agree with the
quarantine row for row, Data Docs and the delivery report come out with personal data masked,
freshness reads the manifest, and the gold gate decides what reaches the serving file."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import duckdb
import pytest
from pyspark.sql import functions as F

pytestmark = pytest.mark.spark
CITY_DAY = dt.date(2026, 11, 27)  # the delivery date of the built_city fixture (tests/conftest.py)
CLEAR_ID_NUMBER = re.compile(r"(?<![\dA-Z])\d{17}[\dX](?![\dA-Z])")


def _lake(spark, env):
    from citylake.lake import Lake

    return Lake(env, spark)


def _results(spark, env):
    return _lake(spark, env).read("ops", "quality_results")


def test_every_suite_ran_in_the_city_run_and_bronze_agrees_with_quarantine(built_city, spark):
    """The run itself gates every layer (bronze at ingest, silver at standardize, gold before
    publication): each table's suite left its results, and the run's Data Docs show them."""
    from citylake.config import load_contracts
    from quality import docs
    from quality import tables as suite_tables

    env, _, _ = built_city
    contracts = load_contracts()
    lake = _lake(spark, env)
    results = _results(spark, env)
    recorded = {
        f"{r.layer}.{r.table_name}"
        for r in results.select("layer", "table_name").distinct().collect()
    }
    expected = {f"{layer}.{table}" for layer, table in suite_tables.tables(contracts)}
    assert recorded == expected, f"suites that never ran: {sorted(expected - recorded)}"
    failed_hard = results.where((F.col("severity") == "hard") & ~F.col("success")).count()
    assert failed_hard == 0

    # Two implementations of GB 11643 — the suite's expectation and standardize's reasons — must
    # reject exactly the same delivered rows.
    source = "gongan__household_register"
    (row,) = (
        results.where(
            (F.col("table_name") == source)
            & (F.col("expectation") == "expect_column_values_to_be_valid_id_number")
        )
        .select("unexpected_count", "severity", "unexpected_examples")
        .collect()
    )
    rules = F.array(*[F.lit(f"id_number.{r}") for r in ("format", "check_character", "birth_date")])
    rejected = (
        lake.read("quarantine", source).where(F.arrays_overlap("reason_codes", rules)).count()
    )
    assert rejected > 0
    assert (row["unexpected_count"], row["severity"]) == (rejected, "soft")
    assert not CLEAR_ID_NUMBER.search(row["unexpected_examples"] or "")

    index = docs.site_dir(env) / "index.html"
    assert index.is_file()
    text = "\n".join(p.read_text(encoding="utf-8") for p in index.parent.rglob("*.html"))
    assert f"bronze.{source}" in text and "gold.population__person" in text
    assert not CLEAR_ID_NUMBER.search(text), "an ID number in clear in the Data Docs"


def test_delivery_report_accounts_for_every_row(built_city, spark):
    from citylake.config import load_contracts
    from quality.report import collect, render_markdown

    env, _, _ = built_city
    contracts = load_contracts()
    report = collect(env, contracts, "gongan", CITY_DAY)
    (file,) = report.files
    lake = _lake(spark, env)
    source = "gongan__household_register"
    quarantine = lake.read("quarantine", source)
    assert file.received == lake.read("bronze", source).count()
    assert file.quarantined == quarantine.count() > 0
    assert file.accepted + file.quarantined == file.received
    by_reason = {
        r["code"]: r["count"]
        for r in quarantine.select(F.explode("reason_codes").alias("code"))
        .groupBy("code")
        .count()
        .collect()
    }
    assert {r.code: r.count for r in file.reasons} == by_reason
    text = render_markdown(report)
    assert "市公安局" in text and "Public Security Bureau" in text
    assert "号码校验码错误" in text and "wrong check character" in text
    assert not CLEAR_ID_NUMBER.search(text), "an ID number in clear in the report"
    check = next(r for r in file.reasons if r.code == "id_number.check_character")
    assert check.examples and all("*" in value for _, value in check.examples)


def test_freshness_reads_the_manifest(built_city):
    from citylake.config import load_contracts
    from quality.freshness import freshness, last_deliveries

    env, _, _ = built_city
    contracts = load_contracts()
    last = last_deliveries(env, CITY_DAY)
    assert last == {source_id: CITY_DAY for source_id in contracts}
    assert not [f for f in freshness(contracts, last, CITY_DAY) if f.overdue]
    later = CITY_DAY + dt.timedelta(days=2)
    overdue = {
        f.source_id for f in freshness(contracts, last_deliveries(env, later), later) if f.overdue
    }
    assert overdue == {s for s, c in contracts.items() if c.frequency == "daily"}
    assert last_deliveries(env, CITY_DAY - dt.timedelta(days=1)) == {}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_soft_failure_publishes_and_hard_failure_keeps_the_last_good_file(city_copy, spark):
    from citylake.config import settings
    from pipelines.publish import publish
    from quality import runner, validation

    _, city, contracts = settings()
    lake = _lake(spark, city_copy)
    table = "population__person"
    before = _sha(city_copy.serving_file)
    person = lake.read("gold", table)
    someone = person.where(F.col("is_alive")).select("id_number").first()[0]
    aged = person.withColumn(
        "age", F.when(F.col("id_number") == someone, F.lit(150)).otherwise(F.col("age"))
    ).localCheckpoint()
    lake.overwrite(aged, "gold", table)
    too_old = lake.read("gold", table).where((F.col("age") > 120) | (F.col("age") < 0)).count()

    # A soft failure: recorded as a warning, and the table is published.
    summary = runner.check_table(lake, "gold", table, CITY_DAY)
    assert summary["failed_hard"] == []
    assert f"expect_column_values_to_be_between(age): {too_old} unexpected" in summary["warnings"]
    recorded = (
        _results(spark, city_copy)
        .where((F.col("run_id") == summary["run_id"]) & ~F.col("success"))
        .select("expectation", "column_name", "severity", "unexpected_count", "table_version")
        .collect()
    )
    assert ("expect_column_values_to_be_between", "age", "soft", too_old, summary["version"]) in [
        tuple(r) for r in recorded
    ]
    publish(city_copy, city, contracts, CITY_DAY)
    published = _sha(city_copy.serving_file)
    assert published != before
    with duckdb.connect(str(city_copy.serving_file), read_only=True) as con:
        assert con.execute(f"SELECT count(*) FROM {table} WHERE age = 150").fetchone()[0] == 1

    # A hard failure: the gate names table, expectation and count; the file stays as it was.
    lake.append(lake.read("gold", table).where(F.col("id_number") == someone), "gold", table)
    with pytest.raises(validation.QualityGateFailed) as raised:
        runner.check_table(lake, "gold", table, CITY_DAY)
    assert (
        "gold.population__person: expect_column_values_to_be_unique(id_number) failed: "
        "2 unexpected" in str(raised.value)
    )
    # Publication goes on serving the last version that passed; the failed one is never served.
    served = publish(city_copy, city, contracts, CITY_DAY)
    assert served["versions"][table] == summary["version"]
    with duckdb.connect(str(city_copy.serving_file), read_only=True) as con:
        assert (
            con.execute(f"SELECT count(*) - count(DISTINCT id_number_key) FROM {table}").fetchone()[
                0
            ]
            == 0
        )
        assert con.execute(f"SELECT count(*) FROM {table} WHERE age = 150").fetchone()[0] == 1
