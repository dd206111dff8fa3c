"""公共数据开放 over the browser tests' small city, published with the pipeline's serving SQL."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from citylake.config import load_city, load_contracts, load_environment
from pipelines.open_data import OpenDataRefused, export, load_spec
from tests.browser.small_city import make_small_city

FRICTIONLESS = str(Path(sys.executable).parent / "frictionless")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("open_data")
    os.environ["CITYLAKE_DATA_ROOT"] = str(root)
    try:
        environment = load_environment()
    finally:
        del os.environ["CITYLAKE_DATA_ROOT"]
    small = make_small_city(load_city(), load_contracts())
    environment.serving_file.parent.mkdir(parents=True)
    small.publish(root, environment.serving_file)
    return environment


@pytest.fixture(scope="module")
def written(env):
    return export(env, load_city())


def test_every_package_validates_with_frictionless_and_speaks_both_languages(env, written) -> None:
    spec = load_spec()
    assert {w.package for w in written} == {p.name for p in spec.packages}
    for package in spec.packages:
        folder = env.open_data_dir / package.name
        done = subprocess.run(
            [FRICTIONLESS, "validate", "datapackage.json"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-3000:]
        import json

        descriptor = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
        assert descriptor["licenses"][0]["name"] == "CC-BY-4.0"
        assert "贺州市" in descriptor["title"] and "Hezhou" in descriptor["title"]
        assert descriptor["update_frequency"] and descriptor["publisher"]
        for resource in descriptor["resources"]:
            assert (folder / resource["parquet"]).exists()
            for field in resource["schema"]["fields"]:
                assert any("\u4e00" <= ch <= "\u9fff" for ch in field["title"]), field
                assert any(ch.isascii() and ch.isalpha() for ch in field["title"]), field


def test_cells_counting_fewer_than_five_persons_are_suppressed(env, written) -> None:
    spec = load_spec()
    checked = 0
    for package in spec.packages:
        for resource in package.resources:
            path = env.open_data_dir / package.name / f"{resource.name}.csv"
            with path.open(encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle):
                    for column in resource.person_counts:
                        value = row[column]
                        assert value == "" or int(value) == 0 or int(value) >= 5, (path, row)
                        checked += 1
            parquet = duckdb.sql(f"SELECT count(*) FROM '{path.with_suffix('.parquet')}'")
            assert parquet.fetchone()[0] == next(
                w.rows for w in written if w.resource == resource.name
            )
    assert checked > 0 and sum(w.suppressed for w in written) > 0


def test_an_export_holding_a_persons_name_or_number_is_refused_whole(env, written) -> None:
    before = sorted(p.name for p in env.open_data_dir.rglob("*"))
    clear = duckdb.connect(str(env.restricted_file), read_only=True)
    name = clear.execute(
        "SELECT name FROM population__person WHERE name IS NOT NULL LIMIT 1"
    ).fetchone()[0]
    clear.close()
    spec = load_spec()
    leaking = (
        spec.packages[0]
        .resources[0]
        .model_copy(
            update={
                "sql": "SELECT division_code, name AS division_name, count(*) AS persons "
                "FROM population__person GROUP BY ALL",
                "fields": {
                    "division_code": {"zh": "区县", "en": "District"},
                    "division_name": {"zh": "区县", "en": "District"},
                    "persons": {"zh": "人数", "en": "Persons"},
                },
                "person_counts": [],
            }
        )
    )
    package = spec.packages[0].model_copy(update={"resources": [leaking]})
    with pytest.raises(OpenDataRefused) as refused:
        export(env, load_city(), spec.model_copy(update={"packages": [package]}))
    message = str(refused.value)
    assert "residents_by_district.csv" in message and "column division_name" in message
    assert "name" in message and name not in message  # the value itself is masked
    assert sorted(p.name for p in env.open_data_dir.rglob("*")) == before  # nothing replaced
