"""The dashboard bundle is consistent before Superset ever sees it (no browser, no Superset).

Superset's importer forgives little and explains less (a missing chart uuid in position_json
duplicates charts on export; a missing chartId fails with a bare KeyError; a dataset column the
table lacks fails only when a chart runs), so the links between the files, and between the
datasets and the serving file publish.py writes, are checked here in a second or two.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import duckdb
import pytest
import yaml

from citylake.config import load_city, load_contracts
from dashboards.provision import (
    MASKED_DATABASE_UUID,
    RESTRICTED_DATABASE_UUID,
    RESTRICTED_FILE_PLACEHOLDER,
    SERVING_FILE_PLACEHOLDER,
    SUPERSET_URL_PLACEHOLDER,
    ZIP_ROOT,
    planned_access,
    render_bundle,
)

from .small_city import make_small_city


def _rendered(tmp_path: Path) -> dict[str, dict]:
    serving_file = tmp_path / "serving" / "city.duckdb"
    zip_path = render_bundle(
        serving_file, tmp_path / "bundle.zip", superset_url="http://127.0.0.1:9999"
    )
    with zipfile.ZipFile(zip_path) as bundle:
        return {
            name.removeprefix(f"{ZIP_ROOT}/"): yaml.safe_load(bundle.read(name).decode("utf-8"))
            for name in bundle.namelist()
        }


def _of_kind(files: dict[str, dict], folder: str) -> list[dict]:
    return [content for name, content in files.items() if name.startswith(f"{folder}/")]


@pytest.fixture(scope="module")
def serving_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """table → column → type of a serving file built by publish's SQL (the small city)."""
    root = tmp_path_factory.mktemp("bundle_city")
    small = make_small_city(load_city(), load_contracts())
    small.publish(root, root / "serving" / "city.duckdb")
    with duckdb.connect(str(root / "serving" / "city.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
        ).fetchall()
    schema: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        schema.setdefault(table, {})[column] = kind
    return schema


def test_render_fills_every_placeholder_and_opens_the_files_read_only(tmp_path: Path) -> None:
    files = _rendered(tmp_path)
    databases = {d["uuid"]: d for d in _of_kind(files, "databases")}
    serving = (tmp_path / "serving" / "city.duckdb").resolve()
    assert databases[MASKED_DATABASE_UUID]["sqlalchemy_uri"] == f"duckdb:///{serving.as_posix()}"
    restricted = serving.parent / "restricted" / "city_clear.duckdb"
    assert databases[RESTRICTED_DATABASE_UUID]["sqlalchemy_uri"] == (
        f"duckdb:///{restricted.as_posix()}"
    )
    for database in databases.values():
        connect_args = database["extra"]["engine_params"]["connect_args"]
        assert connect_args["read_only"] is True
        assert connect_args["config"]["enable_external_access"] is False
        assert database["allow_dml"] is False
    text = str(files)
    for placeholder in (
        SERVING_FILE_PLACEHOLDER,
        RESTRICTED_FILE_PLACEHOLDER,
        SUPERSET_URL_PLACEHOLDER,
    ):
        assert placeholder not in text
    # the offline base map is served by this Superset
    [deck] = [c for c in _of_kind(files, "charts") if c["viz_type"] == "deck_polygon"]
    assert deck["params"]["mapbox_style"].startswith("tile://http://127.0.0.1:9999/citylake/")
    assert files["metadata.yaml"]["type"] == "assets"


def test_every_reference_in_the_bundle_resolves(tmp_path: Path) -> None:
    files = _rendered(tmp_path)
    databases = {d["uuid"] for d in _of_kind(files, "databases")}
    datasets = {d["uuid"]: d for d in _of_kind(files, "datasets")}
    charts = {c["uuid"]: c for c in _of_kind(files, "charts")}
    dashboards = _of_kind(files, "dashboards")
    uuids = [*databases, *datasets, *charts, *(d["uuid"] for d in dashboards)]
    assert len(uuids) == len(set(uuids)), "every object has its own uuid"

    assert all(d["database_uuid"] == MASKED_DATABASE_UUID for d in datasets.values()), (
        "no dataset may sit on the restricted (clear) database"
    )
    assert all(c["dataset_uuid"] in datasets for c in charts.values())
    on_dashboards = []
    for dashboard in dashboards:
        nodes = [
            n
            for n in dashboard["position"].values()
            if isinstance(n, dict) and n.get("type") == "CHART"
        ]
        assert all(n["meta"]["uuid"] in charts for n in nodes), dashboard["slug"]
        chart_ids = [n["meta"]["chartId"] for n in nodes]
        assert len(set(chart_ids)) == len(chart_ids), "each chart node needs its own chartId"
        for node_id, node in dashboard["position"].items():
            if isinstance(node, dict) and "children" in node:
                assert all(child in dashboard["position"] for child in node["children"]), node_id
        for native in dashboard["metadata"]["native_filter_configuration"]:
            for target in native["targets"]:
                assert target == {} or target["datasetUuid"] in datasets
        on_dashboards += [n["meta"]["uuid"] for n in nodes]
    assert set(on_dashboards) == set(charts), "every chart is on a dashboard"
    assert {d["slug"] for d in dashboards} == {
        "city_operations",
        "population",
        "legal_entity_credit",
        "licence_service",
        "data_health",
        "sharing_audit",
    }


def test_charts_use_only_metrics_and_columns_their_dataset_defines(tmp_path: Path) -> None:
    files = _rendered(tmp_path)
    datasets = {d["uuid"]: d for d in _of_kind(files, "datasets")}
    for chart in _of_kind(files, "charts"):
        dataset = datasets[chart["dataset_uuid"]]
        metrics = {m["metric_name"] for m in dataset["metrics"]}
        columns = {c["column_name"] for c in dataset["columns"]}
        params = chart["params"]
        used_metrics = set(params.get("metrics", [])) | {params.get("metric")} - {None}
        used_columns = (
            set(params.get("groupby", []))
            | set(params.get("all_columns", []))
            | set(params.get("js_columns", []))
            | {params.get("x_axis"), params.get("line_column")}
        ) - {None}
        assert used_metrics <= metrics, chart["slice_name"]
        assert used_columns <= columns, chart["slice_name"]


def test_datasets_match_the_tables_publish_writes(tmp_path: Path, serving_schema) -> None:
    """A column renamed in publish.py and not in the bundle fails here, not in a chart."""
    for dataset in _of_kind(_rendered(tmp_path), "datasets"):
        table = dataset["table_name"]
        assert table in serving_schema, f"{table}: publish.py writes no such table"
        physical = {c["column_name"]: c["type"] for c in dataset["columns"] if not c["expression"]}
        assert physical == serving_schema[table], table
        if dataset["main_dttm_col"]:
            assert serving_schema[table][dataset["main_dttm_col"]].startswith(("DATE", "TIMESTAMP"))


def test_labels_are_chinese_with_english_beside(tmp_path: Path) -> None:
    files = _rendered(tmp_path)
    for chart in _of_kind(files, "charts"):
        name = chart["slice_name"]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in name), name
        assert any("a" <= ch.lower() <= "z" for ch in name), name


def test_access_plan_gives_each_county_its_own_row_filter() -> None:
    plan = planned_access()
    codes = [d.code for d in load_city().divisions]
    analysts = {name: role for name, role in plan["roles"].items() if name.startswith("county_")}
    assert sorted(analysts) == [f"county_analyst_{code}" for code in codes]
    for code in codes:
        rls = analysts[f"county_analyst_{code}"]["row_level_security"]
        assert rls["clause"] == f"division_code = '{code}'"
        assert plan["users"][f"analyst_{code}"]["role"] == f"county_analyst_{code}"
    # only the data engineer reaches the clear copy, and only it has SQL Lab
    with_restricted = [n for n, r in plan["roles"].items() if "restricted" in r["databases"]]
    assert with_restricted == ["data_engineer"]
    with_sql_lab = [n for n, r in plan["roles"].items() if "sql_lab" in r["builtin"]]
    assert with_sql_lab == ["data_engineer"]
    assert "sql_lab" not in plan["roles"]["city_leader"]["builtin"]
    assert "admin" not in plan["users"], "the admin is created by superset.sh init"
    # the access log of the data service: the security officer's alone among the masked roles
    assert plan["audit_datasets"] == ["health_access"]
    assert [n for n, r in plan["roles"].items() if r.get("audit")] == ["security_officer"]


def test_gold_datasets_describe_every_column_from_the_catalogue(tmp_path: Path) -> None:
    """The Superset datasets' column descriptions come from base_libraries/<table>.yml: every
    served column of a gold table (masked, keyed, lineage) is described, with its classes."""
    from citylake import catalogue

    files = _rendered(tmp_path)
    datasets = {d["table_name"]: d for d in _of_kind(files, "datasets")}
    for table in catalogue.GOLD_TABLES:
        dataset = datasets[table.name]
        assert dataset["description"].startswith(table.meta.description.zh)
        described = {  # computed columns (an expression, e.g. age_band) describe themselves
            c["column_name"]: c["description"] for c in dataset["columns"] if not c["expression"]
        }
        assert described == catalogue.serving_descriptions(table), table.name
        for column in table.columns:
            name = f"{column.name}_masked" if column.personal else column.name
            assert described[name].startswith(column.zh), (table.name, name)
            assert column.classes.sharing.level in described[name]
