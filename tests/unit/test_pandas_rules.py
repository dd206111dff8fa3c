"""The pandas twins of the standardization rules (quality/pandas_rules.py, what the gates run on
tables small enough for pandas) give exactly what the Spark rules give (what standardize
quarantines by), value for value, and agree with python-stdnum: a gate and the quarantine never
judge one value two ways."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from pyspark.sql import functions as F
from stdnum.cn import ric, uscc

from pipelines import credit_code as C
from pipelines import standardize as S
from quality import pandas_rules as P
from tests.unit.test_credit_code import oracle, random_codes
from tests.unit.test_standardize import random_numbers

pytestmark = pytest.mark.spark
AS_OF = dt.date(2026, 11, 27)

MESSY_IDS = [
    None, "", "  ", "abc", "４５２４２６１９９００１０１１２３Ｘ", " 452426199001011238 ",
    "452426900101123", "45242619900101123x", "452426 1990 0101 1238", "4524261990010112",
    "45242620300101123X",  # born after the as-of date
    "45112119900101002X",  # 昭平县's code of today on a birth before it existed
]  # fmt: skip


def _spark_ric(spark, values: list[str | None], as_of: dt.date) -> list[tuple]:
    frame = spark.createDataFrame(list(enumerate(values)), "i int, v string")
    checked = S.with_ric_checks(frame, "v", S.division_eras_frame(spark), F.lit(as_of))
    return [(r["v"], r["v_reasons"]) for r in checked.orderBy("i").collect()]


def _pandas_ric(values: list[str | None], as_of: dt.date) -> list[tuple]:
    series = pd.Series(values, dtype=object)
    cleaned = P.upgrade_ric15(P.clean_id_number(series))
    reasons = P.ric_reasons(series, "v", as_of)
    return [(None if pd.isna(c) else c, list(r)) for c, r in zip(cleaned, reasons, strict=True)]


def test_id_number_rules_are_the_same_on_pandas_and_spark(spark):
    values = random_numbers(3000, seed=20261127) + MESSY_IDS
    assert _pandas_ric(values, AS_OF) == _spark_ric(spark, values, AS_OF)


def test_id_number_rules_on_pandas_agree_with_stdnum():
    numbers = random_numbers(3000, seed=43697)
    found = _pandas_ric(numbers, dt.date(9999, 12, 31))
    for number, (_, reasons) in zip(numbers, found, strict=True):
        try:
            valid = ric.is_valid(number)
        except (KeyError, ValueError):
            valid = False
        assert (reasons == []) == valid, (number, reasons)


def test_the_as_of_date_decides_a_birth_in_the_future():
    late = "45110220261128123" + ric.calc_check_digit("45110220261128123" + "0")  # 八步区
    assert _pandas_ric([late], dt.date(2026, 11, 27))[0][1] == ["v.birth_date"]
    assert _pandas_ric([late], dt.date(2026, 11, 28))[0][1] == []


def test_credit_code_rules_are_the_same_on_pandas_and_spark(spark):
    codes = random_codes(3000, seed=32100) + [
        None,
        "",
        "n2451121mf0012345r",
        "９１４５１１０２ＭＡ５ＮＱ３ＲＴ９Ｇ",
    ]
    frame = spark.createDataFrame(list(enumerate(codes)), "i int, v string")
    on_spark = [
        (r["v"], r["v_reasons"]) for r in C.with_uscc_checks(frame, "v").orderBy("i").collect()
    ]
    series = pd.Series(codes, dtype=object)
    cleaned = P.clean_credit_code(series)
    on_pandas = [
        (None if pd.isna(c) else c, list(r))
        for c, r in zip(cleaned, P.uscc_reasons(series, "v"), strict=True)
    ]
    assert on_pandas == on_spark
    for code, (_, reasons) in zip(codes, on_pandas, strict=True):
        if (
            code and code.isascii()
        ):  # stdnum compacts no full-width; numeric: stdnum, letters: table
            assert (reasons == []) == oracle(code), (code, reasons)
    assert uscc.is_valid("91451102MA5NQ3RT9G")


@pytest.mark.parametrize(
    "text",
    ["2023-05-01", "2023/5/1", "20230501", "2023年5月1日", "45000", " 2023-5-1 ", "2023.5.1",
     "05/03/2023", "2023-02-30", "", None, "２０２３-０５-０１"],
)  # fmt: skip
def test_dates_parse_the_same_on_pandas_and_spark(spark, text):
    frame = spark.createDataFrame([(text,)], "v string")
    (spark_value,) = frame.select(S.parse_date(F.col("v"))).first()
    pandas_value = P.parse_date(pd.Series([text], dtype=object)).iloc[0]
    assert (None if pd.isna(pandas_value) else pandas_value.date()) == spark_value


def test_text_cleaning_is_the_same_on_pandas_and_spark(spark):
    values = ["  贺州 市  ", "ＡＢＣ１２３", "a\u3000b", "\t", None, "x  \n y"]
    # every invisible character (NUL, other controls, zero-width, a BOM inside) is removed
    invisible = [chr(c) for c in [*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0)]]
    invisible += ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
    values += [f"45\x00242{c}6" for c in invisible] + ["\x00", "张\x00三", "\x07 \x1b[31m"]
    frame = spark.createDataFrame(list(enumerate(values)), "i int, v string")
    on_spark = [r[0] for r in frame.orderBy("i").select(S.clean_text(F.col("v"))).collect()]
    on_pandas = [None if pd.isna(v) else v for v in P.clean_text(pd.Series(values, dtype=object))]
    assert on_pandas == on_spark
    assert on_spark[len(values) - 3 :] == [None, "张三", "[31m"]
    assert set(on_spark[6 : len(values) - 3]) == {"452426"}
