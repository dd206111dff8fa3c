"""Every table has its suite, every gold key is tested, and a broken suite file is a clear error at
load naming the file (no Spark needed: suites are built, not run)."""

from __future__ import annotations

import pytest

from citylake import catalogue
from citylake.config import ConfigError, load_city, load_contracts
from quality import suites as suite_files
from quality import validation

CITY = load_city()
CONTRACTS = load_contracts()


@pytest.fixture(scope="module")
def suites():
    return {s.name: s for s in suite_files.load_all(CITY, CONTRACTS)}


def _types(suite) -> list[tuple[str, str | None, str]]:
    return [
        (e.expectation_type, e.configuration.kwargs.get("column"), e.configuration.meta["severity"])
        for e in suite.expectations
    ]


def test_every_bronze_silver_and_gold_table_has_a_suite(suites):
    expected = {f"bronze.{s}" for s in CONTRACTS}
    expected |= {f"silver.{c.silver_table}" for c in CONTRACTS.values()}
    expected |= {f"gold.{t.name}" for t in catalogue.GOLD_TABLES}
    assert set(suites) == expected
    assert len(suites) == 2 * len(CONTRACTS) + len(catalogue.GOLD_TABLES) - _shared_silver()
    for table in catalogue.GOLD_TABLES:  # gold business rules live in a file per table
        assert suites[f"gold.{table.name}"].path == suite_files.suite_path(table.name, "gold")


def _shared_silver() -> int:
    return len(CONTRACTS) - len({c.silver_table for c in CONTRACTS.values()})


def test_every_gold_key_is_hard_not_null_and_unique(suites):
    for table in catalogue.GOLD_TABLES:
        found = _types(suites[f"gold.{table.name}"])
        for key in table.key:
            assert ("expect_column_values_to_not_be_null", key, "hard") in found, table.name
        if len(table.key) == 1:
            assert ("expect_column_values_to_be_unique", table.key[0], "hard") in found
        ordered = suites[f"gold.{table.name}"].expectations[0].configuration.kwargs
        assert ordered["column_list"] == table.column_names


def test_business_rules_are_expectations(suites):
    person = _types(suites["gold.population__person"])
    pairs = {
        (e.configuration.kwargs.get("column_A"), e.configuration.kwargs.get("column_B"))
        for s in suites.values()
        for e in s.expectations
        if e.expectation_type == "expect_column_pair_values_a_to_be_greater_than_b"
    }
    assert ("death_date", "birth_date") in pairs
    assert ("valid_until", "issue_date") in pairs
    assert ("expect_column_values_to_be_valid_id_number", "id_number", "hard") in person
    case = suites["gold.service__case"].expectations
    hours = [e for e in case if e.configuration.kwargs.get("column") == "handling_hours"]
    assert hours and hours[0].configuration.kwargs["min_value"] == 0
    evaluation = suites["gold.service__evaluation"].expectations
    (score,) = [e for e in evaluation if e.configuration.kwargs.get("column") == "score"]
    assert (score.configuration.kwargs["min_value"], score.configuration.kwargs["max_value"]) == (
        1,
        5,
    )


def test_bronze_content_rules_are_soft_and_silver_ones_hard(suites):
    bronze = _types(suites["bronze.gongan__household_register"])
    silver = _types(suites["silver.person"])
    assert ("expect_column_values_to_be_valid_id_number", "id_number", "soft") in bronze
    assert ("expect_column_values_to_be_valid_id_number", "id_number", "hard") in silver
    assert ("expect_column_values_to_be_city_division_code", "division_code", "hard") in silver
    assert ("expect_column_values_to_not_be_null", "_row_number", "hard") in bronze
    codes = [
        e.configuration.kwargs["division_codes"]
        for e in suites["silver.person"].expectations
        if e.expectation_type == "expect_column_values_to_be_city_division_code"
    ]
    assert codes == [CITY.division_codes]  # $city.division_codes resolved from conf/city.yaml
    assert "id_number" in suites["silver.person"].personal


def write_suite(tmp_path, body: str, layer: str = "gold", table: str = "population__person"):
    folder = tmp_path / layer
    folder.mkdir(exist_ok=True)
    path = folder / f"{table}.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_unknown_expectation_names_the_file_and_the_entry(tmp_path):
    path = write_suite(
        tmp_path,
        "table: population__person\nlayer: gold\nexpectations:\n"
        "  - {type: expect_column_values_to_be_awesome, severity: hard, kwargs: {column: name}}\n",
    )
    with pytest.raises(ConfigError) as raised:
        suite_files.load_suite(path, CITY, CONTRACTS)
    message = str(raised.value)
    assert str(path) in message
    assert "unknown expectation 'expect_column_values_to_be_awesome'" in message
    # the generated expectations come first, so the file's entry is numbered after them
    assert "expectations[" in message


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ("{column: age, min_value: 0, maximum: 120}", "wrong arguments"),
        ("{column: age, mostly: lots}", "wrong arguments"),
        ("{column: agee, min_value: 0}", "unknown column(s) ['agee']"),
    ],
)
def test_wrong_argument_or_column_names_the_file(tmp_path, kwargs, complaint):
    path = write_suite(
        tmp_path,
        "table: population__person\nlayer: gold\nexpectations:\n"
        f"  - {{type: expect_column_values_to_be_between, severity: soft, kwargs: {kwargs}}}\n",
    )
    with pytest.raises(ConfigError, match="wrong arguments|unknown column") as raised:
        suite_files.load_suite(path, CITY, CONTRACTS)
    assert str(path) in str(raised.value)
    assert complaint in str(raised.value)
    assert "expect_column_values_to_be_between" in str(raised.value)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (
            "table: population__person\nlayer: gold\nexpectations:\n  - {type: x, severity: fatal}\n",
            "severity",
        ),
        ("table: population__person\nlayer: gold\nexpectation: []\n", "expectation"),
        ("table: [unclosed\n", "invalid suite"),
        ("table: licence__licence\nlayer: gold\nexpectations: []\n", "must agree"),
        (
            "table: population__person\nlayer: gold\nexpectations:\n"
            "  - {type: expect_column_values_to_be_city_division_code, severity: hard,"
            " kwargs: {column: division_code, division_codes: $city.districts}}\n",
            "unknown placeholder '$city.districts'",
        ),
    ],
)
def test_malformed_suite_files_name_the_file(tmp_path, body, complaint):
    path = write_suite(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        suite_files.load_suite(path, CITY, CONTRACTS)
    assert str(path) in str(raised.value)
    assert complaint in str(raised.value)


def test_a_gold_table_without_its_file_and_a_file_without_a_table(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="every gold table needs its suite file"):
        suite_files.load_suite(tmp_path / "gold" / "population__person.yaml", CITY, CONTRACTS)
    stray = write_suite(
        tmp_path, "table: nowhere\nlayer: silver\nexpectations: []\n", "silver", "nowhere"
    )
    with pytest.raises(ConfigError) as raised:
        suite_files.load_suite(stray, CITY, CONTRACTS)
    assert str(stray) in str(raised.value)


def test_gx_examples_are_masked_by_their_columns_kind_or_their_shape():
    assert validation._masked(["ok", "45242619900101123X"], None) == ["ok", "4524**********123X"]
    assert validation._masked(["八步区贺街镇城中路6号"], "address") == ["八步区贺街镇"]
    assert validation._masked({"value": "韦小明", "count": 2}, "name") == {
        "value": "韦**",
        "count": 2,
    }
