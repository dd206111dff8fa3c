"""统一社会信用代码 (unified social credit code, GB 32100-2015) as native Spark expressions.

Layout of the 18 characters:

====  ===========================================================================
1     登记管理部门 registration authority ('1' 机构编制, '5' 民政, '9' 工商/市场监管 ...)
2     机构类别 entity type within that authority ('9' then '1' 企业, '2' 个体工商户 ...)
3–8   登记管理机关行政区划码: the GB/T 2260 division code of the registering office
9–17  主体标识码: the GB 11714 organisation code (its 9th character is its own check)
18    校验码: check character, GB/T 17710 MOD 31-3 over the 31-character alphabet
====  ===========================================================================

The rules, in full as the standard gives them:

* positions 1–2: a registration authority and an entity type of the standard's table (附录 A,
  ``AUTHORITIES`` below), letters included: 'A' (中央军委改革和编制办公室: 军队事业单位),
  'N' (农业: 组级/村级/乡镇级集体经济组织, the rural collective economic organisations a county
  registers by the thousand) and 'Y' (其他). A code of the alphabet there that the table does not
  list is ``<column>.registration_authority``;
* positions 3–8 ASCII digits (a GB/T 2260 division), 9–18 characters of the alphabet
  (``<column>.format`` otherwise);
* the check character of position 18 (``<column>.check_character``); the GB 11714 check
  character embedded at position 17 is *not* verified (python-stdnum does not check it either).

python-stdnum's ``stdnum.cn.uscc`` is the oracle for the codes it covers: it demands eight leading
digits, so it judges the numeric authorities only, where these rules agree with it once the
table's authority/type pairs are required too; a table of hand-checked letter-prefixed codes
covers the rest (tests/unit/test_credit_code.py).

Reason codes (texts in quality/reason_codes.yaml): ``<column>.missing``, ``<column>.format``,
``<column>.registration_authority``, ``<column>.check_character`` and, only when the caller
passes the city's division codes, ``<column>.division_outside_city``.
"""

from __future__ import annotations

import re

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.standardize import clean_id_number, number_reasons

# GB 32100 alphabet: 0-9 and the upper-case letters except I, O, S, V, Z. A character's value is
# its index here (A=10 ... Y=30), and the check character is the alphabet letter of the check value.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# Weight of position i (0-based) is 3^i mod 31.
USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
# Two characters of the alphabet (authority, type), six digits (division), ten of the alphabet.
USCC_PATTERN = r"^[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}$"
# GB 32100-2015 附录 A (with its amendment No. 1): registration authority (登记管理部门) →
# its entity types (机构类别), each with its name.
AUTHORITIES: dict[str, tuple[str, dict[str, str]]] = {
    "1": ("机构编制", {"1": "机关", "2": "事业单位", "3": "中央编办直接管理机构编制的群众团体", "9": "其他"}),
    "2": ("外交", {"1": "外国常驻新闻机构", "9": "其他"}),
    "3": ("司法行政", {"1": "律师执业机构", "2": "公证处", "3": "基层法律服务所",
                       "4": "司法鉴定机构", "5": "仲裁委员会", "9": "其他"}),
    "4": ("文化", {"1": "外国在华文化中心", "9": "其他"}),
    "5": ("民政", {"1": "社会团体", "2": "民办非企业单位", "3": "基金会", "9": "其他"}),
    "6": ("旅游", {"1": "外国旅游部门常驻代表机构",
                   "2": "港澳台地区旅游部门常驻内地（大陆）代表机构", "9": "其他"}),
    "7": ("宗教", {"1": "宗教活动场所", "2": "宗教院校", "9": "其他"}),
    "8": ("工会", {"1": "基层工会", "9": "其他"}),
    "9": ("工商", {"1": "企业", "2": "个体工商户", "3": "农民专业合作社"}),
    "A": ("中央军委改革和编制办公室", {"1": "军队事业单位", "9": "其他"}),
    "N": ("农业", {"1": "组级集体经济组织", "2": "村级集体经济组织",
                   "3": "乡镇级集体经济组织", "9": "其他"}),
    "Y": ("其他", {"1": "其他"}),
}  # fmt: skip
# Every legal first two characters.
AUTHORITY_TYPES = tuple(sorted(a + t for a, (_, types) in AUTHORITIES.items() for t in types))

# clean_id_number turns full-width digits and upper-case letters to half-width, but of the
# full-width lower-case letters only 'ｘ' (all an ID number needs); a credit code needs them all.
_FULLWIDTH_LOWER = "".join(chr(0xFF41 + i) for i in range(26))  # ａ..ｚ
_HALFWIDTH_LOWER = "abcdefghijklmnopqrstuvwxyz"


def clean_credit_code(column: Column) -> Column:
    """Credit code as printed on a licence: no blanks or hyphens, half-width, upper-case.

    clean_id_number (trim, full-width → half-width, no blanks, upper-case; '' → null), after
    turning full-width lower-case letters to half-width, and without the '-' separators that
    stdnum.cn.uscc.compact also removes.
    """
    text = clean_id_number(F.translate(column, _FULLWIDTH_LOWER, _HALFWIDTH_LOWER))
    text = F.regexp_replace(text, "-", "")
    return F.when(text == "", None).otherwise(text)


def uscc_check_character(first17: Column) -> Column:
    """The GB 32100 check character of the first 17 characters (already of the alphabet)."""
    alphabet = F.lit(USCC_ALPHABET)
    total = sum(
        (F.instr(alphabet, F.substring(first17, i + 1, 1)) - 1) * weight
        for i, weight in enumerate(USCC_WEIGHTS)
    )
    return F.substring(alphabet, F.pmod(-total, F.lit(31)) + 1, 1)


def city_divisions(city_division_codes: list[str]) -> list[str]:
    """The division codes a credit code registered in the city may carry: the given county-level
    codes and, for each, its city-level code (first 4 digits + '00', e.g. 451102 → 451100: the
    city's own 市场监管局 registers too). Historical codes (e.g. 4524xx) are not added: credit codes
    exist only since 2015."""
    for code in city_division_codes:
        if not re.fullmatch(r"\d{6}", code):
            raise ValueError(f"not a 6-digit division code: {code!r}")
    return sorted(set(city_division_codes) | {c[:4] + "00" for c in city_division_codes})


def with_uscc_checks(
    df: DataFrame, column: str, city_division_codes: list[str] | None = None
) -> DataFrame:
    """Normalise a credit code column in place and add its derived fields and reason codes.

    Adds <column>_reasons (array of reason codes; empty when valid) and what the code itself says,
    when it is well formed (null otherwise): <column>_authority (1st character, registration
    authority), <column>_entity_type (2nd character) and <column>_division (characters 3–8).

    With city_division_codes (e.g. City.division_codes), a well-formed code whose division is none
    of city_divisions(city_division_codes) gets <column>.division_outside_city: a soft fact (the
    entity registered elsewhere, e.g. with the province or in another city), not an error in the
    code. Without it, that rule is not applied.
    """
    df = df.withColumn(column, clean_credit_code(F.col(column)))
    code = F.col(column)
    well_formed = code.rlike(USCC_PATTERN)
    division = F.substring(code, 3, 6)
    rules = number_reasons(code, column, USCC_PATTERN, uscc_check_character)
    rules.append(
        F.when(
            well_formed & ~F.substring(code, 1, 2).isin(list(AUTHORITY_TYPES)),
            F.lit(f"{column}.registration_authority"),
        )
    )
    if city_division_codes is not None:
        inside = division.isin(city_divisions(city_division_codes))
        rules.append(
            F.when(well_formed & ~inside, F.lit(f"{column}.division_outside_city")),
        )
    return (
        df.withColumn(f"{column}_reasons", F.array_compact(F.array(*rules)))
        .withColumn(f"{column}_authority", F.when(well_formed, F.substring(code, 1, 1)))
        .withColumn(f"{column}_entity_type", F.when(well_formed, F.substring(code, 2, 1)))
        .withColumn(f"{column}_division", F.when(well_formed, division))
    )
