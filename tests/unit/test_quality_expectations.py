"""The custom domain expectations and a gold suite on small Spark frames with known violations:
exact unexpected counts, python-stdnum as the oracle for the number rules, masking, the gate."""

from __future__ import annotations

import datetime as dt

import pytest
from stdnum.cn import ric, uscc

from citylake import catalogue
from citylake.config import load_city, load_contracts
from quality import suites, validation
from quality.expectations import reference_view

pytestmark = pytest.mark.spark

CITY = load_city()
CONTRACTS = load_contracts()


def ric18(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17 + "0")  # stdnum expects a check slot


def uscc18(first17: str) -> str:
    return first17 + uscc.calc_check_digit(first17)


@pytest.fixture(autouse=True)
def _no_reference_views_left(spark):
    """Views a test registers for the referential check must not outlive it: in a shared session
    they would stand in for the real tables of later tests."""
    yield
    spark.catalog.dropTempView(reference_view("gold.population__person"))


def spec_suite(table: str, expectations: list[dict], columns: tuple[str, ...], personal=None):
    """A silver suite; `personal` maps a column to its personal-data kind (citylake.masking)."""
    spec = suites.SuiteSpec(table=table, layer="silver", expectations=expectations)
    built = suites.build_expectations(spec, "test", columns, CITY, dt.date(2026, 11, 27))
    return suites.Suite(spec, None, built, columns, dict(personal or {}))


def by_type(rows: list[dict]) -> dict[str, dict]:
    return {r["expectation"]: r for r in rows}


def test_number_rules_count_exactly_what_stdnum_rejects(spark):
    valid = [ric18("45242619900101123"), ric18("45242419751231002"), ric18("45112320100615004")]
    wrong_check = valid[0][:17] + ("0" if valid[0][17] != "0" else "1")
    impossible_date = ric18("45242619900231123")  # 31 February, right check character
    future_birth = ric18("45112320990101123")
    legacy15 = "452426900101123"  # becomes 45242619900101123 + check: valid
    fullwidth = valid[1].translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    ids = [*valid, wrong_check, impossible_date, future_birth, legacy15, fullwidth, None, "abc"]
    for number in valid:
        assert ric.is_valid(number)
    for number in (wrong_check, impossible_date, "abc"):
        assert not ric.is_valid(number)
    assert ric.is_valid(future_birth)  # stdnum does not look at the calendar; GB 11643 does
    good_code = uscc18("91451102MA5NQ3RT9")
    codes = [good_code, good_code[:17] + "0", "91451102MA5NQ3RTIG", None] + [None] * 6
    assert uscc.is_valid(good_code)
    frame = spark.createDataFrame(list(zip(ids, codes, strict=True)), "id string, code string")
    suite = spec_suite(
        "t",
        [
            {
                "type": "expect_column_values_to_be_valid_id_number",
                "severity": "hard",
                "kwargs": {"column": "id"},
            },
            {
                "type": "expect_column_values_to_be_valid_credit_code",
                "severity": "soft",
                "kwargs": {"column": "code"},
            },
        ],
        ("id", "code"),
        personal={"id": "id_number"},
    )
    rows = by_type(validation.validate(frame, suite, "run-1", 3))
    id_row = rows["expect_column_values_to_be_valid_id_number"]
    # nine values judged (the empty one is not: completeness is another expectation's job)
    assert (id_row["element_count"], id_row["unexpected_count"], id_row["success"]) == (
        9,
        4,
        False,
    )
    # Personal data never lands in clear: 18-character numbers keep 4 + 4 characters.
    assert wrong_check not in id_row["unexpected_examples"]
    assert wrong_check[:4] + "*" * 10 + wrong_check[-4:] in id_row["unexpected_examples"]
    code_row = rows["expect_column_values_to_be_valid_credit_code"]
    assert (code_row["unexpected_count"], code_row["severity"]) == (2, "soft")
    assert code_row["table_version"] == 3 and code_row["suite_name"] == "silver.t"


def test_division_future_date_and_parseable_date(spark):
    rows = [
        ("451102", "2026-11-27", "2023/5/1"),
        ("451199", "2026-11-28", "2023年5月1日"),  # not a division; a day after the as-of date
        ("452424", "2026-11-27 23:59:00", "05/03/2023"),  # historical code; late but same day
        (" 451123 ", None, "45000"),  # blanks are trimmed; an Excel serial day is a date
        (None, "2030-01-01 00:00:00", "2023.5.1"),
    ]
    frame = spark.createDataFrame(rows, "division string, seen string, sent string")
    suite = spec_suite(
        "t",
        [
            {
                "type": "expect_column_values_to_be_city_division_code",
                "severity": "hard",
                "kwargs": {"column": "division", "division_codes": "$city.division_codes"},
            },
            {
                "type": "expect_column_values_to_not_be_in_the_future",
                "severity": "hard",
                "kwargs": {"column": "seen", "as_of": "$as_of"},
            },
            {
                "type": "expect_column_values_to_be_parseable_date",
                "severity": "soft",
                "kwargs": {"column": "sent"},
            },
        ],
        ("division", "seen", "sent"),
    )
    found = by_type(validation.validate(frame, suite, "run-2", 0))
    assert found["expect_column_values_to_be_city_division_code"]["unexpected_count"] == 2
    assert found["expect_column_values_to_not_be_in_the_future"]["unexpected_count"] == 2
    assert found["expect_column_values_to_be_parseable_date"]["unexpected_count"] == 2


def test_referential_check_counts_values_missing_from_the_other_table(spark):
    people = spark.createDataFrame([("A",), ("B",), ("C",)], "id_number string")
    people.createOrReplaceTempView(reference_view("gold.population__person"))
    frame = spark.createDataFrame(
        [("A",), ("B",), ("X",), ("Y",), (None,), ("A",)], "spouse string"
    )
    suite = spec_suite(
        "t",
        [
            {
                "type": "expect_column_values_to_be_found_in_table",
                "severity": "soft",
                "kwargs": {
                    "column": "spouse",
                    "other_table": "gold.population__person",
                    "other_column": "id_number",
                    "mostly": 0.5,
                },
            }
        ],
        ("spouse",),
    )
    (row,) = validation.validate(frame, suite, "run-3", 1)
    assert (row["element_count"], row["unexpected_count"]) == (5, 2)
    assert row["unexpected_percent"] == pytest.approx(40.0)
    assert row["success"]  # 60% found ≥ mostly 0.5
    assert set(row["unexpected_examples"].split(", ")) == {"X", "Y"}


def person_rows() -> list[dict]:
    """Seven people of gold.population__person; each broken row breaks one rule."""
    base = {
        "name": "韦小明",
        "sex": "男",
        "birth_date": dt.date(1990, 1, 1),
        "age": 36,
        "ethnicity": "瑶族",
        "household_id": "H1",
        "relation_to_head": "户主",
        "division_code": "451102",
        "division_name": "八步区",
        "birth_division_code": "451102",
        "address": "八步区人民路1号",
        "phone": "13800000000",
        "registered_date": dt.date(2008, 1, 1),
        "is_alive": True,
        "death_date": None,
        "marital_status": "已婚",
        "spouse_id_number": None,
        "record_source": "户籍",
        "_source_file": "gongan/household_register/2026-11-27/f.csv",
        "_batch_id": "b1",
        "_ingested_at": dt.datetime(2026, 11, 27, 8),
    }
    ids = [ric18(f"45242619900101{i:03d}") for i in range(6)]
    people = [{**base, "id_number": i} for i in ids]
    people[1] |= {"is_alive": False, "death_date": dt.date(1989, 5, 1)}  # dies before birth
    people[2] |= {"sex": "未知", "division_code": "999999"}
    people[3] |= {"death_date": dt.date(2020, 1, 1)}  # dead yet alive
    people[4] |= {"household_id": None}  # a 户籍 resident without a household
    people[5] |= {"id_number": ids[5][:17] + ("0" if ids[5][17] != "0" else "1")}
    people.append({**people[0]})  # the same person twice
    return people


def person_frame(spark, people: list[dict]):
    columns = catalogue.gold_table("population__person").column_names
    schema = spark.createDataFrame([], _person_schema()).schema
    return spark.createDataFrame([[p[c] for c in columns] for p in people], schema)


def _person_schema() -> str:
    types = {
        "birth_date": "date",
        "registered_date": "date",
        "death_date": "date",
        "age": "int",
        "is_alive": "boolean",
        "_ingested_at": "timestamp",
    }
    columns = catalogue.gold_table("population__person").column_names
    return ", ".join(f"{c} {types.get(c, 'string')}" for c in columns)


def test_gold_suite_on_known_violations_gives_exact_counts(spark):
    suite = suites.suite_for("gold", "population__person", CITY, CONTRACTS, dt.date(2026, 11, 27))
    spark.createDataFrame([], "id_number string").createOrReplaceTempView(
        reference_view("gold.population__person")
    )
    rows = validation.validate(person_frame(spark, person_rows()), suite, "run-4", 7)
    failed = {
        (r["expectation"], r["column_name"]): r["unexpected_count"]
        for r in rows
        if not r["success"]
    }
    assert failed == {
        ("expect_column_values_to_be_unique", "id_number"): 2,
        ("expect_column_values_to_be_valid_id_number", "id_number"): 1,
        ("expect_column_pair_values_a_to_be_greater_than_b", "death_date,birth_date"): 1,
        ("expect_column_values_to_be_in_set", "sex"): 1,
        ("expect_column_values_to_be_city_division_code", "division_code"): 1,
        ("expect_column_values_to_be_null", "death_date"): 1,
        ("expect_column_values_to_not_be_null", "household_id"): 1,
    }
    assert all(r["severity"] == "hard" for r in rows if not r["success"])
    with pytest.raises(validation.QualityGateFailed) as raised:
        validation.gate(rows)
    message = str(raised.value)
    assert (
        "gold.population__person: expect_column_values_to_be_unique(id_number) failed: 2 unexpected of 7"
        in message
    )
    assert "expect_column_values_to_not_be_null(household_id) failed: 1 unexpected of 7" in message


def test_clean_gold_rows_pass_and_soft_failures_only_warn(spark):
    people = person_rows()[:1]
    # a spouse first registered in 昭平县 under its code of today (451121, from 2002)
    people[0] = {**people[0], "age": 130, "spouse_id_number": ric18("45112120050101002")}
    suite = suites.suite_for("gold", "population__person", CITY, CONTRACTS, dt.date(2026, 11, 27))
    spark.createDataFrame([], "id_number string").createOrReplaceTempView(
        reference_view("gold.population__person")
    )
    rows = validation.validate(person_frame(spark, people), suite, "run-5", 1)
    failed = {(r["expectation"], r["column_name"], r["severity"]) for r in rows if not r["success"]}
    assert failed == {
        ("expect_column_values_to_be_between", "age", "soft"),
        ("expect_column_values_to_be_found_in_table", "spouse_id_number", "soft"),
    }
    validation.gate(rows)  # soft failures never raise


def _history_rows():
    """Six keys: one sound history and five broken in each way the invariants name."""
    d = dt.date
    return [
        ("ok", d(2026, 11, 1), d(2026, 11, 5), False),
        ("ok", d(2026, 11, 5), None, True),
        ("overlap", d(2026, 11, 1), d(2026, 11, 6), False),
        ("overlap", d(2026, 11, 5), None, True),
        ("backwards", d(2026, 11, 28), d(2026, 11, 27), False),  # valid_to before valid_from
        ("backwards", d(2026, 11, 27), None, True),
        ("two_current", d(2026, 11, 1), None, True),
        ("two_current", d(2026, 11, 1), None, True),
        ("gap", d(2026, 11, 1), d(2026, 11, 3), False),
        ("gap", d(2026, 11, 4), None, True),
        ("no_current", d(2026, 11, 1), d(2026, 11, 3), False),
    ]


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_history_invariants_catch_each_broken_key(spark, engine):
    import pandas as pd

    rows = _history_rows()
    schema = "id string, valid_from date, valid_to date, is_current boolean"
    frame = spark.createDataFrame(rows, schema)
    if engine == "pandas":
        frame = pd.DataFrame(rows, columns=["id", "valid_from", "valid_to", "is_current"])
    suite = spec_suite(
        "t",
        [
            {
                "type": "expect_history_to_be_consistent",
                "severity": "hard",
                "kwargs": {"key_columns": ["id"]},
            }
        ],
        ("id", "valid_from", "valid_to", "is_current"),
    )
    (row,) = validation.validate(frame, suite, "run-h", 1)
    assert (row["element_count"], row["unexpected_count"], row["success"]) == (6, 5, False)
    assert sorted(row["unexpected_examples"].split(", ")) == [
        "backwards", "gap", "no_current", "overlap", "two_current"
    ]  # fmt: skip
    with pytest.raises(validation.QualityGateFailed, match=r"expect_history_to_be_consistent"):
        validation.gate([row])
