"""The catalogue: one metadata file per gold table (base_libraries/<table>.yml) and the source
contracts for silver, every class filled in with its reason, errors naming file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from citylake import catalogue
from citylake.classification import GRADE_ORDER, OPEN_ORDER, SHARING_ORDER
from citylake.config import ConfigError, load_contracts

CONTRACTS = load_contracts()


def test_every_gold_column_has_descriptions_and_all_three_classes_with_reasons():
    assert len(catalogue.GOLD_TABLES) == 12
    for table in catalogue.GOLD_TABLES:
        assert table.meta.description.zh and table.meta.description.en
        assert table.grain.startswith("one row per ")
        for column in table.columns:
            assert column.zh and column.en, (table.name, column.name)
            assert column.classes.sharing.level in SHARING_ORDER
            assert column.classes.open.level in OPEN_ORDER
            assert column.classes.grade.level in GRADE_ORDER
            for given in (column.classes.sharing, column.classes.open, column.classes.grade):
                assert len(given.reason) >= 8, (table.name, column.name)


def test_every_silver_column_is_described_in_chinese_and_english_by_its_contract():
    for contract in CONTRACTS.values():
        for column in contract.columns:
            assert column.header.strip() and column.en.strip(), (contract.source_id, column.name)
            assert column.label == f"{column.header} {column.en}"


def test_every_silver_column_has_its_classes_from_the_contract():
    for contract in CONTRACTS.values():
        for column in contract.columns:
            classes = contract.column_classes(column.name)
            assert classes.sharing.reason and classes.open.reason and classes.grade.reason
            if column.pii:
                assert classes.sharing.level != "无条件共享", (contract.source_id, column.name)
                assert classes.open.level == "不予开放", (contract.source_id, column.name)


def test_sources_builders_and_order_are_derived():
    person = catalogue.gold_table("population__person")
    assert person.sources == (
        "gongan__household_register",
        "weijian__births",
        "weijian__deaths",
        "minzheng__marriages",
    )
    assert person.builder == "base_libraries.population:build_person"
    assert catalogue.gold_table("credit__entity_profile").builder == (
        "base_libraries.credit:build_entity_profile"
    )
    names = [t.name for t in catalogue.with_inputs(["service__evaluation"])]
    assert names == ["service__case", "service__evaluation"]
    # entities are personal only on persons' rows: the mask's condition comes from the file
    subject = catalogue.gold_table("credit__record").personal["subject_name"]
    assert subject.persons_only.sql == "\"subject_type\" IS DISTINCT FROM '法人'"
    holder = catalogue.gold_table("spatial__parcel").personal["holder_name"]
    assert holder.persons_only.sql == '"holder_credit_code" IS NULL'


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for path in catalogue.METADATA_DIR.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _column(data: dict, name: str) -> dict:
    return next(c for c in data["columns"] if c["name"] == name)


@pytest.mark.parametrize(
    ("table", "change", "message"),
    [
        (
            "population__person",
            lambda d: _column(d, "phone").update(
                open={"class": "无条件开放", "reason": "想公开电话号码"}
            ),
            "columns.phone: personal data (phone) is 不予开放",
        ),
        (
            "legal_entity__entity",
            lambda d: _column(d, "legal_representative").pop("sharing"),
            "columns.legal_representative: personal data (name) cannot be 无条件共享",
        ),
        (
            "service__case",
            lambda d: d["classes"].pop("grade"),
            "key 'classes.grade': Field required",
        ),
        (
            "service__case",
            lambda d: d["classes"]["sharing"].update({"class": "随便共享"}),
            "key 'classes.sharing.class'",
        ),
        (
            "credit__record",
            lambda d: d["reads"].update(silver=["xinyong__credit_recrods"]),
            "key 'reads.silver': ['xinyong__credit_recrods'] are fed by no contract",
        ),
        ("licence__licence", lambda d: d.update(key=["licence_no"]), "key: ['licence_no']"),
        (
            "spatial__parcel",
            lambda d: _column(d, "holder_name")["personal"]["persons_only"].update(
                column="holder_code"
            ),
            "persons_only: no column 'holder_code'",
        ),
        ("service__evaluation", lambda d: d.update(name="service__rating"), "the file name says"),
    ],
)
def test_a_broken_metadata_file_is_refused_naming_file_and_key(folder, table, change, message):
    _edit(folder / f"{table}.yml", change)
    with pytest.raises(ConfigError) as caught:
        catalogue.load_gold_tables(folder, CONTRACTS)
    assert f"{table}.yml" in str(caught.value)
    assert message in str(caught.value)


def test_gold_tables_reading_each_other_in_a_circle_are_refused(folder):
    _edit(folder / "service__case.yml", lambda d: d["reads"].update(gold=["service__evaluation"]))
    with pytest.raises(ConfigError, match="in a circle"):
        catalogue.load_gold_tables(folder, CONTRACTS)
