"""Configuration is validated at load: errors name the file and the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from citylake.config import (
    CONF_DIR,
    ConfigError,
    load_city,
    load_contracts,
    load_environment,
)


@pytest.fixture
def conf(tmp_path) -> Path:
    shutil.copytree(CONF_DIR, tmp_path / "conf")
    return tmp_path / "conf"


def test_shipped_configuration_loads():
    city = load_city()
    assert city.code == "451100"
    assert {d.code: d.name for d in city.divisions} == {
        "451102": "八步区",
        "451103": "平桂区",
        "451121": "昭平县",
        "451122": "钟山县",
        "451123": "富川瑶族自治县",
    }
    contracts = load_contracts()
    assert "gongan__household_register" in contracts
    assert load_environment("local").spark.master == "local[*]"


def test_predecessor_codes_existed_in_gb2260_history():
    """Every historical code in city.yaml is in stdnum's GB/T 2260 table, ended by 2002."""
    from citylake.divisions import division_eras

    eras = {}
    for era in division_eras():
        eras.setdefault(era.code, []).append(era)
    for division in load_city().divisions:
        for old in division.predecessors:
            assert old in eras, old
            assert all(e.last_year is not None and e.last_year <= 2002 for e in eras[old]), old


def test_unknown_key_names_file_and_key(conf):
    path = conf / "sources" / "gongan__household_register.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "colour: blue\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_contracts(conf)
    assert str(path) in str(error.value)
    assert "colour" in str(error.value)


def test_wrong_type_names_file_and_key(conf):
    path = conf / "city.yaml"
    text = path.read_text(encoding="utf-8").replace('code: "451100"', "code: [1, 2]")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"city\.yaml: key 'code'"):
        load_city(conf)


def test_business_key_must_be_a_column(conf):
    path = conf / "sources" / "gongan__household_register.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "business_key: [id_number]", "business_key: [uid]"
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="business_key"):
        load_contracts(conf)


@pytest.mark.parametrize(
    ("given", "problem"),
    [("", "Field required"), (", en: ''", "at least 1 character")],
)
def test_a_column_without_its_english_description_names_file_and_key(conf, given, problem):
    path = conf / "sources" / "gongan__household_register.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "header: 户号, en: Household number", f"header: 户号{given}"
    )
    assert "en: Household number" not in text
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_contracts(conf)
    assert f"{path}: key 'columns.5.en': " in str(error.value)
    assert problem in str(error.value)


def test_scale_is_only_for_decimal_columns(conf):
    path = conf / "sources" / "zhujian__buildings.yaml"
    text = path.read_text(encoding="utf-8").replace(
        "en: Date of completion, type: date", "en: Date of completion, type: date, scale: 2"
    )
    assert "scale: 2" in text
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"zhujian__buildings\.yaml.*completion_date: scale"):
        load_contracts(conf)


def test_source_id_must_match_file_name(conf):
    source = conf / "sources" / "gongan__household_register.yaml"
    source.rename(conf / "sources" / "gongan__register.yaml")
    with pytest.raises(ConfigError, match="source_id"):
        load_contracts(conf)


def test_environment_overrides_and_validation(monkeypatch):
    monkeypatch.setenv("CITYLAKE_SPARK_MASTER", "spark://127.0.0.1:7077")
    monkeypatch.setenv("CITYLAKE_SPARK_CONNECT", "sc://127.0.0.1:15002")
    env = load_environment("local")
    assert env.spark.master == "spark://127.0.0.1:7077"
    assert env.spark.connect_url == "sc://127.0.0.1:15002"
    monkeypatch.setenv("CITYLAKE_SPARK_MASTER", "mesos://nowhere")
    with pytest.raises(ConfigError, match="key 'spark.master'"):
        load_environment("local")


def test_unknown_environment_is_named():
    with pytest.raises(ConfigError, match="staging"):
        load_environment("staging")


@pytest.mark.parametrize("password", ["", "airflow", "postgres", "admin", "citylake"])
def test_production_refuses_default_credentials(monkeypatch, password):
    monkeypatch.setenv("CITYLAKE_PG_USER", "citylake")
    monkeypatch.setenv("CITYLAKE_PG_PASSWORD", password)
    env = load_environment("production")
    with pytest.raises(ConfigError, match="refusing to start"):
        env.metadata_url("airflow")


def test_production_uses_postgresql_with_given_secret(monkeypatch):
    monkeypatch.setenv("CITYLAKE_PG_USER", "citylake_ops")
    monkeypatch.setenv("CITYLAKE_PG_PASSWORD", "k9-Vx2-long-random")
    env = load_environment("production")
    assert env.metadata_url("superset") == (
        "postgresql+psycopg2://citylake_ops:k9-Vx2-long-random@127.0.0.1:5433/citylake_superset"
    )
    assert load_environment("local").metadata_url("airflow").startswith("sqlite:///")
