"""公共数据开放: the open-data packages of pipelines/open_data/packages.yml, from the published
gold tables in clear, as Frictionless Data Packages (CSV UTF-8 + datapackage.json with its Table
Schema) with a Parquet copy of each resource.

Three guards, in this order, before a package is swapped in:
1. suppression: a cell counting 1–4 persons is left empty (minimum_cell);
2. the person join: every text value of every resource is joined against the ID numbers, names
   and phone numbers of natural persons in the clear gold tables (and checked for the shape of
   an ID or mobile number); one hit refuses the export, naming file, row, column and kind;
3. `frictionless validate` of the package must pass.
The packages are written beside the open-data folder and replace it in one rename.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field

from citylake import masking
from citylake.catalogue import GOLD_TABLES
from citylake.config import City, Environment
from citylake.errors import CityLakeError

SPEC = Path(__file__).resolve().parent / "packages.yml"
TABLE_SCHEMA_TYPES = {
    "VARCHAR": "string",
    "BIGINT": "integer",
    "INTEGER": "integer",
    "HUGEINT": "integer",
    "DOUBLE": "number",
    "DATE": "date",
    "BOOLEAN": "boolean",
}


class OpenDataRefused(CityLakeError, ValueError):
    """An open-data export would publish a person's data, or is not a valid package."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Model):
    zh: str
    en: str


class OpenResource(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: Text
    person_counts: list[str]
    sql: str
    fields: dict[str, Text]


class OpenPackage(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    title: Text
    description: Text
    update_frequency: str
    resources: list[OpenResource]


class Licence(_Model):
    name: str
    title: str
    path: str


class Spec(_Model):
    publisher: Text
    licence: Licence
    minimum_cell: int = Field(ge=2)
    packages: list[OpenPackage]


def load_spec(path: Path = SPEC) -> Spec:
    return Spec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Written:
    package: str
    resource: str
    rows: int
    suppressed: int


def _person_values(con: duckdb.DuckDBPyConnection) -> str:
    """A relation (value, kind, origin) of every natural person's ID number, name and phone."""
    parts = []
    for table in GOLD_TABLES:
        for column in table.columns:
            personal = column.personal
            if personal is None or personal.kind not in ("id_number", "name", "phone"):
                continue
            rows = personal.persons_only.sql if personal.persons_only else "true"
            parts.append(
                f"SELECT \"{column.name}\" AS value, '{personal.kind}' AS kind,"
                f" '{table.name}.{column.name}' AS origin FROM {table.name}"
                f' WHERE "{column.name}" IS NOT NULL AND {rows}'
            )
    return "(" + " UNION ALL ".join(parts) + ")"


def _check_no_person(con: duckdb.DuckDBPyConnection, label: str, relation: str) -> None:
    columns = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    text = [c[0] for c in columns if c[1] == "VARCHAR"]
    if not text:
        return
    cells = " UNION ALL ".join(
        f"SELECT row_number() OVER () AS row, '{c}' AS col, \"{c}\" AS value FROM {relation}"
        for c in text
    )
    hit = con.execute(
        f"SELECT c.row, c.col, p.kind, p.origin, c.value FROM ({cells}) c"
        f" JOIN {_person_values(con)} p ON c.value = p.value LIMIT 1"
    ).fetchone()
    if hit is None:
        hit = con.execute(
            f"SELECT row, col, 'shape', 'pattern', value FROM ({cells})"
            " WHERE regexp_matches(value, ?) LIMIT 1",
            [masking.PERSONAL_VALUE.pattern],
        ).fetchone()
    if hit is not None:
        row, column, kind, origin, value = hit
        raise OpenDataRefused(
            f"{label}: row {row}, column {column}: the value {masking.mask(value, 'text')} is "
            f"a natural person's {kind} ({origin}); the open-data export is refused"
        )


def _descriptor(spec: Spec, package: OpenPackage, resources: list[dict], city: City) -> dict:
    return {
        "name": package.name,
        "title": f"{city.name}{package.title.zh} {city.name_en}: {package.title.en}",
        "description": f"{package.description.zh}\n{package.description.en}",
        "licenses": [spec.licence.model_dump()],
        "contributors": [{"title": f"{spec.publisher.zh} {spec.publisher.en}",
                          "role": "publisher"}],
        "publisher": f"{spec.publisher.zh} {spec.publisher.en}",
        "update_frequency": package.update_frequency,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "keywords": [city.name, city.name_en, "公共数据开放", "open data"],
        "resources": resources,
    }  # fmt: skip


def export(env: Environment, city: City, spec: Spec | None = None) -> list[Written]:
    """Write every package from the published clear file; OpenDataRefused on any guard."""
    from frictionless import validate

    spec = spec or load_spec()
    clear = env.restricted_file
    if not clear.exists():
        raise OpenDataRefused(f"{clear}: nothing published yet; run the pipeline first")
    target = env.open_data_dir
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    con = duckdb.connect(str(clear), read_only=True)
    written: list[Written] = []
    try:
        masked = duckdb.connect(str(env.serving_file), read_only=True)
        as_of = masked.execute("SELECT as_of FROM serving_info").fetchone()[0]
        masked.close()
        con.execute("CREATE TEMP TABLE info AS SELECT ?::DATE AS as_of", [as_of])
        con.execute("CREATE TEMP TABLE ref_division (division_code VARCHAR, division_name VARCHAR)")
        con.executemany("INSERT INTO ref_division VALUES (?, ?)",
                        [(d.code, d.name) for d in city.divisions])  # fmt: skip
        for package in spec.packages:
            folder = staging / package.name
            folder.mkdir()
            described = []
            for resource in package.resources:
                label = f"open_data/{package.name}/{resource.name}.csv"
                con.execute(f"CREATE OR REPLACE TEMP TABLE aggregate AS {resource.sql}")
                columns = con.execute("DESCRIBE aggregate").fetchall()
                names = [c[0] for c in columns]
                if missing := [n for n in names if n not in resource.fields]:
                    raise OpenDataRefused(f"{label}: columns {missing} have no description")
                suppressed = 0
                for column in resource.person_counts:
                    suppressed += con.execute(
                        f'SELECT count(*) FROM aggregate WHERE "{column}" BETWEEN 1 AND ?',
                        [spec.minimum_cell - 1],
                    ).fetchone()[0]
                    con.execute(
                        f'UPDATE aggregate SET "{column}" = NULL WHERE "{column}" BETWEEN 1 AND ?',
                        [spec.minimum_cell - 1],
                    )
                _check_no_person(con, label, "aggregate")
                csv_path, parquet_path = (
                    folder / f"{resource.name}.csv",
                    folder / f"{resource.name}.parquet",
                )
                con.execute(f"COPY aggregate TO '{csv_path}' (HEADER, DELIMITER ',')")
                con.execute(f"COPY aggregate TO '{parquet_path}' (FORMAT parquet)")
                rows = con.execute("SELECT count(*) FROM aggregate").fetchone()[0]
                fields = [
                    {
                        "name": name,
                        "type": TABLE_SCHEMA_TYPES.get(kind.split("(")[0], "number"),
                        "title": f"{resource.fields[name].zh} {resource.fields[name].en}",
                        "description": resource.fields[name].zh,
                    }
                    for name, kind, *_ in columns
                ]
                described.append({
                    "name": resource.name,
                    "title": f"{resource.title.zh} {resource.title.en}",
                    "path": csv_path.name,
                    "format": "csv",
                    "mediatype": "text/csv",
                    "encoding": "utf-8",
                    "schema": {"fields": fields, "missingValues": [""]},
                    "rows": rows,
                    "parquet": parquet_path.name,
                })  # fmt: skip
                written.append(Written(package.name, resource.name, rows, suppressed))
            descriptor = _descriptor(spec, package, described, city)
            path = folder / "datapackage.json"
            path.write_text(json.dumps(descriptor, ensure_ascii=False, indent=2) + "\n",
                            encoding="utf-8")  # fmt: skip
            report = validate(str(path))
            if not report.valid:
                errors = [e.message for task in report.tasks for e in task.errors][:5]
                raise OpenDataRefused(f"open_data/{package.name}: not a valid package: {errors}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        con.close()
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return written
