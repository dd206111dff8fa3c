"""The serving SQL: gold → the tables of the serving file, with personal data masked, the
reference tables from conf/, the marts (pipelines/marts/*.sql, one statement each, over the masked
tables already in the file) and the health tables (pipelines.health). Pure SQL over whatever
holds gold — delta_scan in the pipeline, read_parquet in the browser tests' small city — so a
test's serving file cannot drift from the real one. The publication around it (gates, versions,
the atomic swap) is pipelines.publish.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from citylake.catalogue import GOLD_TABLES, LINEAGE, GoldTable, clear_select, masked_sql, served
from citylake.config import City, SourceContract, load_consumers
from citylake.errors import CityLakeError
from citylake.lake import Scan, columns_of, load_extensions
from citylake.lake import sql_text as _sql_text
from citylake.reasons import reason_texts
from pipelines.health import access_table, health_tables

MARTS_DIR = Path(__file__).resolve().parent / "marts"


def marts() -> dict[str, str]:
    """mart name → its SELECT, in file-name order (mart_division_kpi before the map built on it).
    Every mart a county analyst may read carries division_code, the column row-level security
    filters on."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(MARTS_DIR.glob("*.sql"))}


class GoldSchemaMismatch(CityLakeError, ValueError):
    """A gold table lacks columns its catalog entry declares."""


# ----------------------------------------------------------------------------- gold, masked
# Masking happens in the SELECT that copies gold into the serving file: no clear value is ever
# written to it. The rules (citylake.masking) follow each column's personal-data kind in its
# metadata file; rows that are not persons (citylake.classification.PersonRows) stay clear:
# entities' names and credit codes are public under the enterprise credit publicity rules.


def masked_select(table: GoldTable, pepper: str) -> str:
    """The SELECT list that copies a gold table into the serving file with personal data masked:
    each column as catalogue.served names it, lineage as it is."""
    expressions = {
        "clear": lambda c: f'"{c.name}"',
        "masked": lambda c: masked_sql(c.personal, c.name),
        "key": lambda c: f'sha256({_sql_text(pepper)} || "{c.name}")',
    }
    items = [f'{expressions[s.form](s.column)} AS "{s.name}"' for s in served(table)]
    items += [f'"{column}"' for column in LINEAGE]
    return ",\n    ".join(items)


def empty_gold_relation(table: GoldTable) -> str:
    """A gold table not built yet, served empty with its declared columns and types."""
    types = table.column_types
    columns = ", ".join(f'CAST(NULL AS {types[c]}) AS "{c}"' for c in table.column_names)
    return f"(SELECT {columns} WHERE false)"


def _check_columns(con: duckdb.DuckDBPyConnection, table: GoldTable, relation: str) -> None:
    present = set(columns_of(con, relation))
    missing = [c for c in table.column_names if c not in present]
    if missing:
        raise GoldSchemaMismatch(
            f"gold.{table.name} lacks {missing}, declared in base_libraries/{table.name}.yml; "
            "rebuild it with the current builder (the serving file is unchanged)"
        )


def _reference_tables(
    con: duckdb.DuckDBPyConnection, city: City, contracts: dict[str, SourceContract]
) -> None:
    """Small dimension tables from conf/: divisions, source contracts, quarantine reasons."""
    con.execute(
        "CREATE TABLE ref_division (division_code VARCHAR PRIMARY KEY, division_name VARCHAR,"
        " name_en VARCHAR)"
    )
    con.executemany(
        "INSERT INTO ref_division VALUES (?, ?, ?)",
        [(d.code, d.name, d.name_en) for d in city.divisions],
    )
    con.execute(
        "CREATE TABLE ref_source (source_id VARCHAR PRIMARY KEY, title VARCHAR, title_en VARCHAR,"
        " department VARCHAR, department_name VARCHAR, department_name_en VARCHAR,"
        " library VARCHAR, frequency VARCHAR, expected_days INTEGER, due_interval VARCHAR,"
        " sharing VARCHAR)"
    )
    con.executemany(
        "INSERT INTO ref_source VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                c.source_id,
                c.title,
                c.title_en,
                c.department,
                c.department_name,
                c.department_name_en,
                c.library,
                c.frequency.value,
                c.frequency.longest_days,
                c.frequency.interval_sql,
                c.sharing,
            )
            for c in sorted(contracts.values(), key=lambda c: c.source_id)
        ],
    )
    con.execute(
        "CREATE TABLE ref_consumer (consumer VARCHAR PRIMARY KEY, name VARCHAR, name_en VARCHAR)"
    )
    con.executemany(
        "INSERT INTO ref_consumer VALUES (?, ?, ?)",
        [(c.code, c.name, c.name_en) for c in load_consumers(contracts=contracts).values()],
    )
    texts = reason_texts()
    con.execute(
        "CREATE TABLE ref_reason (rule VARCHAR PRIMARY KEY, reason_zh VARCHAR, reason_en VARCHAR)"
    )
    con.executemany(
        "INSERT INTO ref_reason VALUES (?, ?, ?)",
        [(rule, text["zh"], text["en"]) for rule, text in texts.items()],
    )


def build_serving(
    con: duckdb.DuckDBPyConnection,
    scan: Scan,
    city: City,
    contracts: dict[str, SourceContract],
    as_of: dt.date,
    pepper: str,
    versions: dict[str, int | None] | None = None,
    clear: duckdb.DuckDBPyConnection | None = None,
    materialize: bool = True,
) -> dict[str, int]:
    """Write the masked tables, marts and health tables into con (and the clear tables into
    clear, when given); returns rows per served gold table. Pure SQL, no file swapping.

    materialize=False makes the gold tables and marts views over the scan instead (what
    benchmarks/bench_serving.py compares the serving file with: the same queries on Delta)."""
    kind = "TABLE" if materialize else "VIEW"
    load_extensions(con, "delta", "spatial")
    if clear is not None:
        load_extensions(clear, "delta")
    versions = versions or {}
    con.execute(
        "CREATE TABLE serving_info AS SELECT ?::DATE AS as_of,"
        " current_timestamp AS published_at, ? AS city_code, ? AS city_name",
        [as_of, city.code, city.name],
    )
    _reference_tables(con, city, contracts)
    counts: dict[str, int] = {}
    catalog_rows = []
    for table in GOLD_TABLES:
        relation = scan("gold", table.name)
        if relation is None:
            relation = empty_gold_relation(table)
        else:
            _check_columns(con, table, relation)
        con.execute(
            f"CREATE {kind} {table.name} AS SELECT {masked_select(table, pepper)} FROM {relation}"
        )
        if clear is not None:
            clear.execute(
                f"CREATE TABLE {table.name} AS SELECT {clear_select(table)} FROM {relation}"
            )
            # The data service looks rows up by key (and ID numbers for 身份证核验): an ART
            # index makes that a sub-millisecond probe instead of a scan of the table.
            keys = ", ".join(f'"{k}"' for k in table.key)
            clear.execute(f"CREATE INDEX {table.name}__key ON {table.name} ({keys})")
        counts[table.name] = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
        catalog_rows.append(
            (table.name, table.library, table.grain, versions.get(table.name), counts[table.name])
        )
    con.execute(
        "CREATE TABLE serving_tables (table_name VARCHAR, library VARCHAR, grain VARCHAR,"
        " gold_version BIGINT, rows BIGINT)"
    )
    con.executemany("INSERT INTO serving_tables VALUES (?, ?, ?, ?, ?)", catalog_rows)
    for name, sql in marts().items():
        con.execute(f"CREATE {kind} {name} AS {sql}")
    health_tables(con, scan, contracts)
    access_table(con, scan)
    return counts
