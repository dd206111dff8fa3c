"""The standardization rules, on small frames, against python-stdnum as the oracle."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric

from citylake import reasons
from citylake.config import load_city, load_contracts
from citylake.divisions import division_eras
from pipelines import silver
from pipelines import standardize as S

pytestmark = pytest.mark.spark
FAR_FUTURE = dt.date(9999, 12, 31)


def stdnum_valid(number: str) -> bool:
    try:
        return ric.is_valid(number)
    except (KeyError, ValueError):  # stdnum raises KeyError for a province-only code match
        return False


def random_numbers(count: int, seed: int) -> list[str]:
    """A mix stdnum judges both ways: right and wrong check characters, impossible dates,
    codes outside their era, codes that never existed."""
    rng = random.Random(seed)
    codes = sorted({e.code for e in division_eras()})
    hezhou = [c for c in codes if c.startswith(("4511", "4524"))]
    numbers = []
    for _ in range(count):
        code = rng.choice(hezhou) if rng.random() < 0.5 else rng.choice(codes)
        if rng.random() < 0.05:
            code = f"{rng.randrange(100000, 999999)}"
        year = rng.randrange(1900, 2026)
        month, day = rng.randrange(1, 13), rng.randrange(1, 32 if rng.random() < 0.1 else 29)
        body = f"{code}{year:04d}{month:02d}{day:02d}{rng.randrange(1000):03d}"
        check = ric.calc_check_digit(body + "0")
        if rng.random() < 0.2:
            check = rng.choice([c for c in "0123456789X" if c != check])
        numbers.append(body + check)
    return numbers


def checked(spark, numbers: list[str], as_of=FAR_FUTURE):
    frame = spark.createDataFrame([(n,) for n in numbers], "id_number string")
    from pyspark.sql import functions as F

    result = S.with_ric_checks(frame, "id_number", S.division_eras_frame(spark), F.lit(as_of))
    return {r["id_number"]: r for r in result.collect()}


def test_ric_checks_agree_with_stdnum_on_thousands_of_numbers(spark):
    numbers = random_numbers(4000, seed=11643)
    results = checked(spark, numbers)
    expected_valid = {n for n in numbers if stdnum_valid(n)}
    assert 0.3 < len(expected_valid) / len(numbers) < 0.8  # both outcomes well represented
    disagreements = [
        (n, results[n]["id_number_reasons"])
        for n in numbers
        if (not results[n]["id_number_reasons"]) != (n in expected_valid)
    ]
    assert disagreements == []


def test_derived_fields_and_reason_codes(spark):
    valid_old = "452424199001011238"  # 昭平县 before 2002, born 1990, odd sequence: male
    results = checked(
        spark,
        [valid_old, "451102199001011232", "45242419900230123X", "452424199001011230", "12345"],
        as_of=dt.date(2026, 11, 27),
    )
    assert stdnum_valid(valid_old)
    row = results[valid_old]
    assert row["id_number_reasons"] == []
    assert (row["id_number_sex"], row["id_number_birth_date"], row["id_number_division"]) == (
        "男",
        dt.date(1990, 1, 1),
        "452424",
    )
    assert results["451102199001011232"]["id_number_reasons"] == ["id_number.division_era"]
    assert "id_number.birth_date" in results["45242419900230123X"]["id_number_reasons"]
    assert results["452424199001011230"]["id_number_reasons"] == ["id_number.check_character"]
    assert results["12345"]["id_number_reasons"] == ["id_number.format"]


def test_future_birth_date_is_rejected(spark):
    body = "45110220300101123"
    number = body + ric.calc_check_digit(body + "0")
    reasons = checked(spark, [number], as_of=dt.date(2026, 11, 27))[number]["id_number_reasons"]
    assert reasons == ["id_number.birth_date"]


def test_fullwidth_blank_lowercase_and_15_digit_numbers_are_repaired(spark):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(
        [
            ("４５２４２７１９８５０３０３３４５８",),
            (" 45242419900101123x ",),
            ("452424900101123",),
        ],
        "id_number string",
    )
    rows = frame.select(S.upgrade_ric15(S.clean_id_number(F.col("id_number"))).alias("n")).collect()
    repaired = [r["n"] for r in rows]
    assert repaired[:2] == ["452427198503033458", "45242419900101123X"]
    # 15 digits: '19' inserted before the year, check character computed (stdnum agrees).
    assert repaired[2].startswith("45242419900101123") and stdnum_valid(repaired[2])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2023-05-01", dt.date(2023, 5, 1)),
        ("2023/5/1", dt.date(2023, 5, 1)),
        ("20230501", dt.date(2023, 5, 1)),
        ("2023年5月1日", dt.date(2023, 5, 1)),
        ("45047", dt.date(2023, 5, 1)),  # Excel serial day number
        ("２０２３－０５－０１", dt.date(2023, 5, 1)),
        ("2023-02-30", None),
        ("01/05/2023", None),  # day and month order unknowable
        ("2023.05.01", None),  # not a form the departments agreed to send
        ("", None),
        (None, None),
    ],
)
def test_parse_date(spark, text, expected):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame([(text,)], "d string")
    assert frame.select(S.parse_date(F.col("d"))).first()[0] == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("13800138000", "13800138000"),
        ("+86 138-0013-8000", "13800138000"),
        ("0774-5123456", "07745123456"),
        ("12345", None),
        ("", None),
    ],
)
def test_clean_phone(spark, text, expected):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame([(text,)], "p string")
    assert frame.select(S.clean_phone(F.col("p"))).first()[0] == expected


def test_contract_rules_split_rows_and_keep_originals(spark):
    contract = load_contracts()["gongan__household_register"]
    good = [
        "452424199001011238",
        "张三",
        "男",
        "1990-01-01",
        "汉族",
        "H1",
        "户主",
        "451121",
        "昭平县",
        "13800138000",
        "2020/5/1",
    ]
    rows = [
        good,
        ["452424199001011238", *good[1:]],  # repeats the key of row 1
        [
            "451102200505052340",
            "",
            "女",
            "2005年5月5日",
            "汉族",
            "H2",
            "户主",
            "999999",
            "",
            "",
            "2020-13-01",
        ],
    ]
    schema = ", ".join(f"{c} string" for c in contract.column_names)
    bronze = spark.createDataFrame(
        [(*r, None, "f.csv", "b1", i + 1) for i, r in enumerate(rows)],
        f"{schema}, _malformed_line string, _source_file string, _batch_id string, _row_number long",
    ).selectExpr("*", "current_timestamp() AS _ingested_at", "date'2026-11-27' AS _delivery_date")
    standardized = silver.standardize(
        bronze, contract, load_city(), S.division_eras_frame(spark), dt.date(2026, 11, 27)
    )
    accepted = silver.accepted(standardized).collect()
    quarantined = {r["_row_number"]: r for r in silver.quarantined(standardized).collect()}
    assert [r["_row_number"] for r in accepted] == [1]
    assert accepted[0]["registered_date"] == dt.date(2020, 5, 1)
    assert quarantined[2]["reason_codes"] == ["id_number.duplicate_key"]
    assert sorted(quarantined[3]["reason_codes"]) == [
        "division_code.unknown_division",
        "name.missing",
        "registered_date.malformed_date",
    ]
    assert quarantined[3]["registered_date"] == "2020-13-01"  # the original text, as delivered
    texts = reasons.reason_texts()
    assert all(
        code.split(".")[1] in texts for r in quarantined.values() for code in r["reason_codes"]
    )


def test_credit_codes_and_optional_numbers_follow_the_contract(spark):
    """A credit_code column gets the GB 32100 rules; an optional number may be absent."""
    from stdnum.cn import uscc

    from citylake.config import SourceContract

    contract = SourceContract.model_validate(
        {
            "source_id": "shichang__test_registry",
            "title": "测试",
            "title_en": "Test",
            "department": "shichang",
            "department_name": "市场监管局",
            "department_name_en": "Market Regulation",
            "library": "legal_entity",
            "format": "csv",
            "frequency": "daily",
            "classes": {
                "sharing": {"class": "有条件共享", "reason": "测试用：仅向申请部门共享"},
                "open": {"class": "不予开放", "reason": "测试用：不向社会开放"},
                "grade": {"class": "一般", "reason": "测试用：一般数据"},
            },
            "business_key": ["credit_code"],
            "columns": [
                {
                    "name": "credit_code",
                    "header": "统一社会信用代码",
                    "en": "Unified social credit code (GB 32100)",
                    "type": "credit_code",
                    "required": True,
                },
                {
                    "name": "legal_rep_id_number",
                    "header": "法定代表人身份证号",
                    "en": "Legal representative's citizen ID number (GB 11643)",
                    "type": "id_number",
                },
            ],
        }
    )
    body = "91451102MA5NQ3RT9"
    good = body + uscc.calc_check_digit(body)
    wrong = body + ("0" if good[-1] != "0" else "1")
    rows = [(good, None), (wrong, None), (None, "452424199001011230")]
    bronze = spark.createDataFrame(
        [(*r, None, "f.csv", "b1", i + 1) for i, r in enumerate(rows)],
        "credit_code string, legal_rep_id_number string, _malformed_line string, "
        "_source_file string, _batch_id string, _row_number long",
    ).selectExpr("*", "current_timestamp() AS _ingested_at", "date'2026-11-27' AS _delivery_date")
    standardized = silver.standardize(
        bronze, contract, load_city(), S.division_eras_frame(spark), dt.date(2026, 11, 27)
    )
    reasons = {r["_row_number"]: sorted(r["_reasons"]) for r in standardized.collect()}
    assert uscc.is_valid(good) and not uscc.is_valid(wrong)
    assert reasons == {
        1: [],  # the optional legal representative's number is absent: not a defect
        2: ["credit_code.check_character"],
        3: ["credit_code.missing", "legal_rep_id_number.check_character"],
    }


# Hypothesis generates the numbers (and shrinks a disagreement to its smallest case); each example
# is a batch, so thousands of numbers cost a handful of Spark jobs.
PROPERTY_SETTINGS = settings(
    max_examples=8,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
ALL_CODES = sorted({e.code for e in division_eras()})
HEZHOU_CODES = [c for c in ALL_CODES if c.startswith(("4511", "4524"))]


@st.composite
def ric_numbers(draw) -> str:
    """18-character numbers stdnum judges both ways: real and made-up division codes, impossible
    days, codes outside their era, right and wrong check characters, and the odd 15-digit one."""
    code = draw(
        st.one_of(
            st.sampled_from(HEZHOU_CODES),
            st.sampled_from(ALL_CODES),
            st.integers(100000, 999999).map(str),
        )
    )
    year, month = draw(st.integers(1900, 2025)), draw(st.integers(1, 13))
    day = draw(st.integers(1, 31))
    body = f"{code}{year:04d}{month:02d}{day:02d}{draw(st.integers(0, 999)):03d}"
    check = ric.calc_check_digit(body + "0")
    if draw(st.integers(0, 4)) == 0:
        check = draw(st.sampled_from([c for c in "0123456789X" if c != check]))
    if draw(st.integers(0, 19)) == 0:  # a legacy 15-digit number: stdnum sees it as malformed
        return body[:6] + body[8:]
    return body + check


def as_18(number: str) -> str:
    """GB 11643's upgrade of a 15-digit number, computed with stdnum's check digit."""
    if len(number) == 18:
        return number
    first17 = number[:6] + "19" + number[6:]
    return first17 + ric.calc_check_digit(first17 + "0")


@PROPERTY_SETTINGS
@given(numbers=st.lists(ric_numbers(), min_size=400, max_size=400))
def test_ric_checks_agree_with_stdnum_property(spark, numbers):
    """Over 3,200 generated numbers: valid for us exactly when stdnum.cn.ric says valid (a
    15-digit number is judged in its 18-digit form, the upgrade computed with stdnum)."""
    results = checked(spark, numbers)
    disagreements = [
        (n, results[as_18(n)]["id_number_reasons"])
        for n in set(numbers)
        if (not results[as_18(n)]["id_number_reasons"]) != stdnum_valid(as_18(n))
    ]
    assert disagreements == []
