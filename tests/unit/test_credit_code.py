"""The 统一社会信用代码 (GB 32100) rules, on small frames, against python-stdnum as the oracle."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.cn import uscc

from citylake.config import load_city
from pipelines import credit_code as C

pytestmark = pytest.mark.spark

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
FORBIDDEN = "IOSVZ"
HEZHOU = ["451100", "451102", "451103", "451121", "451122", "451123"]
# 91451102MA5NQ3RT9 weighted by 3^i mod 31 sums to 2929; 2929 mod 31 = 15; 31 - 15 = 16 → 'G'.
BABU_COMPANY = "91451102MA5NQ3RT9G"
BEIJING_COMPANY = "91110000600037341L"  # stdnum's own doctest example
# GB 32100-2015 附录 A, written out again by hand from the standard (not from pipelines'
# table): the registration authority and entity type pairs, numeric and lettered.
NUMERIC_PAIRS = frozenset(
    [
        "11",
        "12",
        "13",
        "19",
        "21",
        "29",
        "31",
        "32",
        "33",
        "34",
        "35",
        "39",
        "41",
        "49",
        "51",
        "52",
        "53",
        "59",
        "61",
        "62",
        "69",
        "71",
        "72",
        "79",
        "81",
        "89",
        "91",
        "92",
        "93",
    ]
)
LETTER_PAIRS = frozenset(["A1", "A9", "N1", "N2", "N3", "N9", "Y1"])


def oracle(code: str | None) -> bool:
    """Valid under GB 32100: python-stdnum for the numeric authorities it covers, with the
    standard's authority/type pairs required; for a lettered authority, which stdnum refuses
    outright, stdnum's own compaction and check character with the same rules for the rest."""
    if code is None:
        return False
    if uscc.is_valid(code):
        return uscc.compact(code)[:2] in NUMERIC_PAIRS
    try:
        compact = uscc.compact(code)
    except Exception:  # noqa: BLE001 - stdnum raises its own errors for unusable input
        return False
    return (
        len(compact) == 18
        and compact[:2] in LETTER_PAIRS
        and compact[2:8].isascii()
        and compact[2:8].isdigit()
        and all(c in ALPHABET for c in compact[8:])
        and uscc.calc_check_digit(compact[:17]) == compact[17]
    )


def checked(spark, codes: list[str | None], city_division_codes: list[str] | None = None):
    """with_uscc_checks over the codes, rows back in input order."""
    frame = spark.createDataFrame(list(enumerate(codes)), "i int, code string")
    result = C.with_uscc_checks(frame, "code", city_division_codes)
    return [r.asDict() for r in result.orderBy("i").collect()]


def random_codes(count: int, seed: int) -> list[str]:
    """A mix stdnum judges both ways: valid codes, wrong check characters, forbidden letters,
    letters where stdnum wants digits, wrong lengths, and the spellings stdnum.compact repairs."""
    rng = random.Random(seed)
    codes = []
    for _ in range(count):
        authority = rng.choice("1234567899999" if rng.random() < 0.97 else "ANY")
        entity_type = rng.choice("12393")
        division = rng.choice(HEZHOU) if rng.random() < 0.6 else f"{rng.randrange(10**6):06d}"
        organisation = "".join(
            rng.choice(ALPHABET if rng.random() < 0.3 else "0123456789") for _ in range(9)
        )
        body = authority + entity_type + division + organisation
        code = body + uscc.calc_check_digit(body)
        roll = rng.random()
        if roll < 0.15:  # wrong check character
            code = body + rng.choice([c for c in ALPHABET if c != code[-1]])
        elif roll < 0.22:  # a forbidden letter anywhere
            at = rng.randrange(18)
            code = code[:at] + rng.choice(FORBIDDEN) + code[at + 1 :]
        elif roll < 0.27:  # an allowed letter in positions 1–8 (stdnum wants digits there)
            at = rng.randrange(8)
            code = code[:at] + rng.choice(ALPHABET[10:]) + code[at + 1 :]
        elif roll < 0.34:  # wrong length
            at = rng.randrange(18)
            code = code[:at] + code[at + 1 :] if rng.random() < 0.5 else code + rng.choice(ALPHABET)
        elif roll < 0.37:  # a character outside any alphabet
            at = rng.randrange(18)
            code = code[:at] + rng.choice("#*._/") + code[at + 1 :]
        if rng.random() < 0.1:  # spellings stdnum.compact repairs: case, blanks, hyphens
            at = rng.randrange(1, len(code))
            code = rng.choice(
                [code.lower(), f" {code} ", f"{code[:at]}-{code[at:]}", f"{code[:at]} {code[at:]}"]
            )
        codes.append(code)
    return codes


def test_uscc_checks_agree_with_stdnum_on_thousands_of_codes(spark):
    codes = random_codes(5000, seed=32100)
    rows = checked(spark, codes)
    expected = [oracle(c) for c in codes]
    assert 0.3 < sum(expected) / len(codes) < 0.8  # both outcomes well represented
    disagreements = [
        (code, row["code_reasons"])
        for code, row, valid in zip(codes, rows, expected, strict=True)
        if (row["code_reasons"] == []) != valid
    ]
    assert disagreements == []


def test_check_character_matches_stdnum_for_every_last_character(spark):
    """All 31 endings of a few bodies: exactly the one stdnum computes is accepted."""
    bodies = [BABU_COMPANY[:17], BEIJING_COMPANY[:17], "52451121MJ0012345"]
    codes = [body + last for body in bodies for last in ALPHABET]
    rows = checked(spark, codes)
    accepted = [row["code"] for row in rows if row["code_reasons"] == []]
    assert accepted == [body + uscc.calc_check_digit(body) for body in bodies]
    rejected = [row["code_reasons"] for row in rows if row["code_reasons"]]
    assert rejected == [["code.check_character"]] * (len(codes) - len(bodies))


def test_valid_code_and_derived_fields(spark):
    assert uscc.is_valid(BABU_COMPANY) and uscc.is_valid(BEIJING_COMPANY)
    babu, beijing, bad_check = checked(spark, [BABU_COMPANY, BEIJING_COMPANY, "52451121MJ0012345X"])
    assert babu["code_reasons"] == [] and beijing["code_reasons"] == []
    assert (babu["code_authority"], babu["code_entity_type"], babu["code_division"]) == (
        "9",
        "1",
        "451102",
    )
    assert beijing["code_division"] == "110000"
    # A wrong check character still says what it is (like the ID number's division).
    assert bad_check["code_reasons"] == ["code.check_character"]
    assert (bad_check["code_authority"], bad_check["code_entity_type"]) == ("5", "2")
    assert bad_check["code_division"] == "451121"


def test_fullwidth_blank_lowercase_and_hyphen_are_repaired(spark):
    spellings = [
        "９１４５１１０２ＭＡ５ＮＱ３ＲＴ９Ｇ",  # full-width, upper case
        "９１４５１１０２ｍａ５ｎｑ３ｒｔ９ｇ",  # full-width, lower case
        "　91451102ma5nq3rt9g\t",  # ideographic space, lower case, tab
        "91451102 MA5N Q3RT 9G",
        "91451102-MA5NQ3RT9-G",
        "914511０２ＭＡ5NQ3RT9G",  # half and half
    ]
    for row in checked(spark, spellings):
        assert (row["code"], row["code_reasons"]) == (BABU_COMPANY, [])


@pytest.mark.parametrize(
    "code, reasons",
    [
        (None, ["code.missing"]),
        ("", ["code.missing"]),
        ("  　", ["code.missing"]),
        ("-", ["code.missing"]),
        ("91451102MA5NQ3RT9", ["code.format"]),  # 17 characters
        ("91451102MA5NQ3RT9GG", ["code.format"]),  # 19 characters
        ("91451102MA5NQ3RT9I", ["code.format"]),  # I, O, S, V, Z are not in the alphabet
        ("91451102MA5OQ3RT9G", ["code.format"]),
        ("91451102MA5NQ3RT9Ｚ", ["code.format"]),  # full-width Z: still not in the alphabet
        ("91451102MA5NQ3RT9#", ["code.format"]),
        ("I1451102MA5NQ3RT9G", ["code.format"]),  # I is no authority: not in the alphabet
        ("B1110000600037341J", ["code.registration_authority"]),  # B: no such authority
        ("94451102MA5NQ3RT97", ["code.registration_authority"]),  # 工商 has no type 4
        ("N4451121MF0012345K", ["code.registration_authority"]),  # 农业 has no type 4
        ("91451102MA5NQ3RT9H", ["code.check_character"]),
        ("91451102MA5NQ3RT90", ["code.check_character"]),
        ("91451102MA5NQ3TR9G", ["code.check_character"]),  # two characters swapped
    ],
)
def test_reason_codes(spark, code, reasons):
    expected_valid = oracle(code)
    (row,) = checked(spark, [code])
    assert row["code_reasons"] == reasons
    assert not expected_valid
    derived = (row["code_authority"], row["code_entity_type"], row["code_division"])
    if reasons in (["code.check_character"], ["code.registration_authority"]):
        # well formed: the fields still say what the code claims
        assert derived == (code[0], code[1], code[2:8])
    else:
        assert derived == (None, None, None)


# Lettered registration authorities, each code worked out by hand: the check character is
# 31 - (Σ value(c_i) · 3^i mod 31) mod 31 over the 17 characters (A=10, N=22, Y=30), e.g. for
# N2451121MF0012345: N(22)·1 + 2·3 + 4·9 + 5·27 + 1·19 + 1·26 + 2·16 + 1·17 + M(21)·20
# + F(15)·29 + 0·25 + 0·13 + 1·8 + 2·24 + 3·10 + 4·30 + 5·28 = 1494; 1494 mod 31 = 6;
# 31 - 6 = 25 → 'R' (the 26th character of the alphabet).
LETTERED = {
    "N2451121MF0012345R": ("N", "2", "451121"),  # 昭平县 村级集体经济组织 (a village collective)
    "N1451123MF00A0B1C1": ("N", "1", "451123"),  # 富川 组级集体经济组织
    "N3451102MF00000172": ("N", "3", "451102"),  # 八步区 乡镇级集体经济组织
    "Y1451100MA5K0A1B2H": ("Y", "1", "451100"),  # 其他
    "A1110000MB0012345D": ("A", "1", "110000"),  # 军队事业单位
}


def test_lettered_authorities_of_gb32100_are_valid(spark):
    """GB 32100 gives 'N' (农业: 农村集体经济组织), 'Y' (其他) and 'A' (军队) as registration
    authorities; stdnum.cn.uscc refuses any letter in positions 1–8, so here the hand-checked
    table is the oracle, and stdnum's check-character arithmetic agrees with each entry."""
    codes = list(LETTERED)
    assert not any(uscc.is_valid(c) for c in codes)  # what stdnum cannot judge
    assert all(uscc.calc_check_digit(c[:17]) == c[17] for c in codes)
    rows = checked(spark, codes)
    assert [r["code_reasons"] for r in rows] == [[]] * len(codes)
    assert [(r["code_authority"], r["code_entity_type"], r["code_division"]) for r in rows] == list(
        LETTERED.values()
    )
    wrong = [c[:17] + ("0" if c[17] != "0" else "1") for c in codes]
    assert [r["code_reasons"] for r in checked(spark, wrong)] == [["code.check_character"]] * 5


def test_division_outside_city_only_when_city_codes_are_given(spark):
    city_codes = load_city().division_codes
    assert C.city_divisions(city_codes) == HEZHOU
    bodies = [
        "91451100MA5K0A1B2",  # 贺州市 itself (市市场监管局)
        "91451102MA5NQ3RT9",  # 八步区
        "12451103000012345",  # 平桂区
        "92451123MA5L7WX8Y",  # 富川瑶族自治县
        "91450000198229066",  # registered with the province
        "91110000600037341",  # Beijing
        "91452424MA5K00001",  # 贺州地区 code of before 2002: no credit code carries it
    ]
    codes = [b + uscc.calc_check_digit(b) for b in bodies]
    assert all(uscc.is_valid(c) for c in codes)
    codes += ["91110000600037341M", "12345"]  # the rule applies to well-formed codes only
    inside, outside = [], []
    for row in checked(spark, codes, city_codes):
        (outside if "code.division_outside_city" in row["code_reasons"] else inside).append(
            row["code"]
        )
    assert inside == codes[:4] + ["12345"]
    assert outside == codes[4:7] + ["91110000600037341M"]
    beijing_bad = checked(spark, ["91110000600037341M"], city_codes)[0]["code_reasons"]
    assert beijing_bad == ["code.check_character", "code.division_outside_city"]
    assert all(r["code_reasons"] == [] for r in checked(spark, codes[:7]))  # no city: no rule


def test_city_divisions_rejects_malformed_codes():
    with pytest.raises(ValueError):
        C.city_divisions(["4511"])


def test_no_python_udf_in_the_plan(spark, capsys):
    frame = spark.createDataFrame([(BABU_COMPANY,)], "code string")
    C.with_uscc_checks(frame, "code", ["451102"]).explain(mode="extended")
    plan = capsys.readouterr().out
    assert "code_reasons" in plan
    assert not any(word in plan for word in ("PythonUDF", "BatchEvalPython", "ArrowEvalPython"))


@st.composite
def credit_codes(draw) -> str:
    """Codes stdnum judges both ways: valid ones, wrong check characters, forbidden letters,
    letters where digits belong, wrong lengths, and spellings stdnum.compact repairs."""
    authority = draw(st.sampled_from("123456789999ANY"))
    entity_type = draw(st.sampled_from("12393"))
    division = draw(st.one_of(st.sampled_from(HEZHOU), st.integers(0, 999999).map("{:06d}".format)))
    organisation = draw(st.text(alphabet=ALPHABET, min_size=9, max_size=9))
    body = authority + entity_type + division + organisation
    code = body + uscc.calc_check_digit(body)
    mutation = draw(st.integers(0, 9))
    at = draw(st.integers(0, 17))
    if mutation == 0:
        code = body + draw(st.sampled_from([c for c in ALPHABET if c != code[-1]]))
    elif mutation == 1:
        code = code[:at] + draw(st.sampled_from(FORBIDDEN + "#*._/")) + code[at + 1 :]
    elif mutation == 2:
        code = code[: at % 8] + draw(st.sampled_from(ALPHABET[10:])) + code[at % 8 + 1 :]
    elif mutation == 3:
        code = code[:at] + code[at + 1 :]
    if draw(st.integers(0, 9)) == 0:
        code = draw(st.sampled_from([code.lower(), f" {code} ", f"{code[:5]}-{code[5:]}"]))
    return code


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(codes=st.lists(credit_codes(), min_size=250, max_size=250))
def test_uscc_checks_agree_with_stdnum_property(spark, codes):
    """Over 3,000 generated codes (12 batches of 250): valid for us exactly when the oracle
    (stdnum, with the standard's table) says so."""
    rows = checked(spark, codes)
    disagreements = [
        (code, row["code_reasons"])
        for code, row in zip(codes, rows, strict=True)
        if (row["code_reasons"] == []) != oracle(code)
    ]
    assert disagreements == []
