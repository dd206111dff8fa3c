"""Gold → the serving files, write-audit-publish style.

Two DuckDB files come out of one publication, each built beside the old one and swapped in with
os.replace (DuckDB forbids a writer while Superset's readers hold a file):

- <data root>/serving/city.duckdb: every gold table of base_libraries/*.yml with personal data
  masked (4511**********123X, 张*, 138****5678, addresses cut to the township or street), the marts
  the dashboards read (by district, month and department), and the data-health tables from ops.*
  and quarantine.*. Everyone who may see a dashboard reaches this file.
- <data root>/serving/restricted/city_clear.duckdb: the same gold tables in clear, for the entitled
  roles only (data engineer, admin). Superset registers it as a second database that only those
  roles may use; the folder is mode 700.

Only a gold version that passed its quality gate is published: the gate's results
(ops.quality_results, with the Delta version they checked) are read here, and a table whose
current version has no passing gate stops publication with both files untouched. A gold table
not built yet is published empty (with its catalog columns) and reported as missing, so the
dashboards open and say 0 rather than fail.

The SQL is the same whatever the gold tables are stored in: `build_serving` takes a function that
names each table's relation (delta_scan here; read_parquet in the browser tests' small city), so a
test's serving file cannot drift from the real one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from citylake import masking
from citylake.catalogue import GOLD_TABLES, LINEAGE, GoldTable
from citylake.config import City, Environment, SourceContract
from citylake.errors import CityLakeError
from citylake.lake import delta_relation, delta_tables, is_delta, latest_version, load_extensions
from citylake.lake import sql_text as _sql_text
from citylake.reasons import reason_texts

# A relation for (layer, name): SQL text such as "delta_scan('...')", or None if there is no table.
Scan = Callable[[str, str], "str | None"]


# ----------------------------------------------------------------------------- masking
# Masking happens in the SELECT that copies gold into the serving file: no clear value is ever
# written to it. The rules (citylake.masking) follow each column's personal-data kind in its
# metadata file; rows that are not persons (citylake.classification.PersonRows) stay clear:
# entities' names and credit codes are public under the enterprise credit publicity rules.


def masked_select(table: GoldTable, pepper: str) -> str:
    """The SELECT list that copies a gold table into the serving file with personal data masked."""
    personal = table.personal
    items = []
    for column in table.column_names:
        kind = personal.get(column)
        if kind is None:
            items.append(f'"{column}"')
            continue
        expression = masking.sql(kind.kind, f'"{column}"')
        if kind.persons_only:
            expression = f'CASE WHEN {kind.persons_only.sql} THEN {expression} ELSE "{column}" END'
        items.append(f'{expression} AS "{column}_masked"')
        if kind.kind in masking.KEYED:
            items.append(f'sha256({_sql_text(pepper)} || "{column}") AS "{column}_key"')
    return ",\n    ".join(items)


def empty_gold_relation(table: GoldTable) -> str:
    """A gold table not built yet, served empty with its declared columns and types."""
    types = table.column_types
    columns = ", ".join(f'CAST(NULL AS {types[c]}) AS "{c}"' for c in table.column_names)
    return f"(SELECT {columns} WHERE false)"


# ----------------------------------------------------------------------------- errors, extensions


class PublicationBlocked(CityLakeError, RuntimeError):
    """A gold table has no passing quality gate for its current version."""


class GoldSchemaMismatch(CityLakeError, ValueError):
    """A gold table lacks columns its catalog entry declares."""


def delta_scan(env: Environment, versions: dict[str, int | None] | None = None) -> Scan:
    """Relations over the lake's Delta tables (None where a table does not exist); a gold table
    named in `versions` is read at that version, whatever has been committed since."""
    versions = versions or {}

    def scan(layer: str, name: str) -> str | None:
        path = env.table_path(layer, name)
        if not is_delta(path):
            return None
        return delta_relation(path, versions.get(name) if layer == "gold" else None)

    return scan


def passed_versions(con: duckdb.DuckDBPyConnection, scan: Scan) -> dict[str, int]:
    """For each gold table, the newest Delta version whose every hard expectation passed."""
    results = scan("ops", "quality_results")
    if results is None:
        return {}
    rows = con.execute(f"""
        SELECT table_name, max(table_version) FROM (
            SELECT table_name, table_version, run_id
            FROM {results} WHERE layer = 'gold'
            GROUP BY ALL
            HAVING bool_and(success OR severity = 'soft')
        ) GROUP BY table_name
    """).fetchall()
    return {name: version for name, version in rows}


# ----------------------------------------------------------------------------- the serving SQL


def _columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def _check_columns(con: duckdb.DuckDBPyConnection, table: GoldTable, relation: str) -> None:
    present = set(_columns_of(con, relation))
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
    texts = reason_texts()
    con.execute(
        "CREATE TABLE ref_reason (rule VARCHAR PRIMARY KEY, reason_zh VARCHAR, reason_en VARCHAR)"
    )
    con.executemany(
        "INSERT INTO ref_reason VALUES (?, ?, ?)",
        [(rule, text["zh"], text["en"]) for rule, text in texts.items()],
    )


# The marts: one statement each, over the masked tables already in the file. Every mart a county
# analyst may read carries division_code, the column row-level security filters on.
MARTS = {
    # One row per county-level division: the operations screen's indicators (big numbers are sums
    # over the five rows, so row-level security narrows them to one county).
    "mart_division_kpi": """
        WITH month AS (SELECT date_trunc('month', as_of)::DATE AS m FROM serving_info),
        person AS (
            SELECT division_code,
                count(*) FILTER (WHERE coalesce(is_alive, true)) AS residents,
                count(*) FILTER (WHERE date_trunc('month', birth_date) = (SELECT m FROM month))
                    AS births_this_month,
                count(*) FILTER (WHERE date_trunc('month', death_date) = (SELECT m FROM month))
                    AS deaths_this_month
            FROM population__person GROUP BY ALL),
        household AS (
            SELECT division_code, count(*) FILTER (WHERE members > 0) AS households
            FROM population__household GROUP BY ALL),
        entity AS (
            SELECT division_code,
                count(*) FILTER (WHERE entity_category = '市场主体' AND is_active) AS market_entities,
                count(*) FILTER (WHERE entity_category = '市场主体'
                    AND date_trunc('month', established_date) = (SELECT m FROM month))
                    AS new_entities_this_month,
                count(*) FILTER (WHERE entity_category = '社会组织' AND is_active)
                    AS social_organisations
            FROM legal_entity__entity GROUP BY ALL),
        licence AS (
            SELECT division_code,
                count(*) FILTER (WHERE status IN ('有效', '即将到期')) AS valid_licences,
                count(*) FILTER (WHERE status = '即将到期') AS licences_expiring_30d
            FROM licence__licence GROUP BY ALL),
        credit AS (
            SELECT division_code,
                count(*) FILTER (WHERE on_black_list) AS black_listed_entities,
                count(*) FILTER (WHERE on_red_list) AS red_listed_entities
            FROM credit__entity_profile GROUP BY ALL),
        service AS (
            SELECT division_code, count(*) AS service_cases,
                count(*) FILTER (WHERE is_overdue) AS overdue_cases,
                count(*) FILTER (WHERE NOT is_finished) AS open_cases
            FROM service__case GROUP BY ALL),
        evaluation AS (
            SELECT division_code, count(*) AS evaluations,
                count(*) FILTER (WHERE is_satisfied) AS satisfied_evaluations
            FROM service__evaluation GROUP BY ALL),
        hotline AS (
            SELECT division_code, count(*) AS hotline_tickets,
                count(*) FILTER (WHERE NOT is_closed) AS hotline_open_tickets
            FROM service__hotline_ticket GROUP BY ALL)
        SELECT d.division_code, d.division_name, d.name_en,
            coalesce(person.residents, 0) AS residents,
            coalesce(household.households, 0) AS households,
            coalesce(person.births_this_month, 0) AS births_this_month,
            coalesce(person.deaths_this_month, 0) AS deaths_this_month,
            coalesce(entity.market_entities, 0) AS market_entities,
            coalesce(entity.new_entities_this_month, 0) AS new_entities_this_month,
            coalesce(entity.social_organisations, 0) AS social_organisations,
            coalesce(licence.valid_licences, 0) AS valid_licences,
            coalesce(licence.licences_expiring_30d, 0) AS licences_expiring_30d,
            coalesce(credit.black_listed_entities, 0) AS black_listed_entities,
            coalesce(credit.red_listed_entities, 0) AS red_listed_entities,
            coalesce(service.service_cases, 0) AS service_cases,
            coalesce(service.overdue_cases, 0) AS overdue_cases,
            coalesce(service.open_cases, 0) AS open_cases,
            coalesce(evaluation.evaluations, 0) AS evaluations,
            coalesce(evaluation.satisfied_evaluations, 0) AS satisfied_evaluations,
            coalesce(hotline.hotline_tickets, 0) AS hotline_tickets,
            coalesce(hotline.hotline_open_tickets, 0) AS hotline_open_tickets,
            (SELECT as_of FROM serving_info) AS as_of
        FROM ref_division d
        LEFT JOIN person USING (division_code)
        LEFT JOIN household USING (division_code)
        LEFT JOIN entity USING (division_code)
        LEFT JOIN licence USING (division_code)
        LEFT JOIN credit USING (division_code)
        LEFT JOIN service USING (division_code)
        LEFT JOIN evaluation USING (division_code)
        LEFT JOIN hotline USING (division_code)
        ORDER BY d.division_code
    """,
    # One row per polygon of a division's boundary (the multipolygons split), its outer ring as a
    # JSON array of [lon, lat] (deck.gl polygon layer, line_type json), simplified to ~100 m.
    "mart_division_map": """
        WITH parts AS (
            SELECT division_code,
                unnest(ST_Dump(ST_SimplifyPreserveTopology(ST_GeomFromText(geometry_wkt), 0.001)))
                    .geom AS geom
            FROM spatial__division WHERE geometry_wkt IS NOT NULL)
        SELECT k.*, row_number() OVER (PARTITION BY division_code ORDER BY ST_Area(geom) DESC)
                AS polygon_number,
            json_extract(ST_AsGeoJSON(ST_ExteriorRing(geom)), '$.coordinates')::VARCHAR
                AS boundary_json
        FROM parts JOIN mart_division_kpi k USING (division_code)
        ORDER BY division_code, polygon_number
    """,
    "mart_population_monthly": """
        SELECT division_code, division_name, month,
            sum(births)::BIGINT AS births, sum(deaths)::BIGINT AS deaths FROM (
            SELECT division_code, division_name, date_trunc('month', birth_date)::DATE AS month,
                1 AS births, 0 AS deaths FROM population__person WHERE birth_date IS NOT NULL
            UNION ALL
            SELECT division_code, division_name, date_trunc('month', death_date)::DATE, 0, 1
            FROM population__person WHERE death_date IS NOT NULL)
        GROUP BY ALL ORDER BY ALL
    """,
    "mart_entity_monthly": """
        SELECT division_code, division_name, entity_category, entity_type,
            date_trunc('month', established_date)::DATE AS month,
            count(*) AS new_entities, count(*) FILTER (WHERE is_active) AS still_active,
            sum(registered_capital) AS registered_capital
        FROM legal_entity__entity WHERE established_date IS NOT NULL
        GROUP BY ALL ORDER BY ALL
    """,
    "mart_licence_monthly": """
        SELECT division_code, division_name, licence_type, issuing_authority, status,
            date_trunc('month', issue_date)::DATE AS month, count(*) AS licences
        FROM licence__licence GROUP BY ALL ORDER BY ALL
    """,
    "mart_service_monthly": """
        SELECT division_code, division_name, department,
            date_trunc('month', accepted_at)::DATE AS month,
            count(*) AS cases, count(*) FILTER (WHERE is_finished) AS finished_cases,
            count(*) FILTER (WHERE is_overdue) AS overdue_cases,
            sum(handling_hours) AS handling_hours
        FROM service__case GROUP BY ALL ORDER BY ALL
    """,
    "mart_evaluation_monthly": """
        SELECT e.division_code, d.division_name, e.department,
            date_trunc('month', e.evaluated_at)::DATE AS month,
            count(*) AS evaluations, count(*) FILTER (WHERE e.is_satisfied) AS satisfied,
            sum(e.score) AS score_sum
        FROM service__evaluation e LEFT JOIN ref_division d USING (division_code)
        GROUP BY ALL ORDER BY ALL
    """,
    "mart_hotline_monthly": """
        SELECT division_code, division_name, category, request_kind,
            date_trunc('month', received_at)::DATE AS month,
            count(*) AS tickets, count(*) FILTER (WHERE is_closed) AS closed_tickets,
            sum(handling_hours) AS handling_hours
        FROM service__hotline_ticket GROUP BY ALL ORDER BY ALL
    """,
}

# Canonical columns of the run log the pipeline-health dashboard reads; ops.run_log's columns of
# these names are taken, missing ones stay NULL, so the dashboard works before and after it exists.
RUN_COLUMNS = {
    "run_id": "VARCHAR",
    "dag_id": "VARCHAR",
    "task_id": "VARCHAR",
    "logical_date": "DATE",
    "state": "VARCHAR",
    "started_at": "TIMESTAMP",
    "ended_at": "TIMESTAMP",
    "duration_seconds": "DOUBLE",
    "error": "VARCHAR",
}
# ops.run_log (citylake/orchestration.py RUN_LOG_SCHEMA) logs one row per task event at logged_at.
RUN_COLUMN_FALLBACKS = {"started_at": "logged_at", "ended_at": "logged_at"}


def _health_tables(
    con: duckdb.DuckDBPyConnection, scan: Scan, contracts: dict[str, SourceContract]
) -> None:
    manifest = scan("ops", "ingest_manifest") or (
        "(SELECT NULL::VARCHAR AS file_sha256, NULL::VARCHAR AS source_id,"
        " NULL::VARCHAR AS source_file, NULL::DATE AS delivery_date, NULL::VARCHAR AS batch_id,"
        " NULL::BIGINT AS rows_delivered, NULL::BIGINT AS rows_bronze,"
        " NULL::TIMESTAMPTZ AS ingested_at WHERE false)"
    )
    con.execute(f"""
        CREATE TABLE health_deliveries AS
        SELECT m.source_id, s.title, s.department, s.department_name, m.delivery_date,
            count(*) AS files, sum(m.rows_delivered)::BIGINT AS rows_delivered,
            sum(m.rows_bronze)::BIGINT AS rows_bronze, max(m.ingested_at) AS ingested_at
        FROM {manifest} m LEFT JOIN ref_source s USING (source_id)
        GROUP BY ALL ORDER BY ALL
    """)

    parts = []
    for source_id in sorted(contracts):
        relation = scan("quarantine", source_id)
        if relation is not None:
            parts.append(
                f"SELECT {_sql_text(source_id)} AS source_id, _delivery_date AS delivery_date,"
                f" reason_codes FROM {relation}"
            )
    rows = " UNION ALL ".join(parts) or (
        "SELECT NULL::VARCHAR AS source_id, NULL::DATE AS delivery_date,"
        " NULL::VARCHAR[] AS reason_codes WHERE false"
    )
    con.execute(f"CREATE TEMP TABLE quarantined AS {rows}")
    # Rows by reason: a row with two reasons counts under each (the reasons are what to fix).
    con.execute("""
        CREATE TABLE health_quarantine AS
        SELECT q.source_id, s.title, s.department, s.department_name, q.delivery_date,
            q.reason_code, split_part(q.reason_code, '.', 1) AS column_name,
            split_part(q.reason_code, '.', 2) AS rule, r.reason_zh, r.reason_en,
            r.reason_zh || ' ' || r.reason_en AS reason, count(*) AS rows
        FROM (SELECT source_id, delivery_date, unnest(reason_codes) AS reason_code
              FROM quarantined) q
        LEFT JOIN ref_source s USING (source_id)
        LEFT JOIN ref_reason r ON r.rule = split_part(q.reason_code, '.', 2)
        GROUP BY ALL ORDER BY ALL
    """)
    con.execute("""
        CREATE TABLE health_source_freshness AS
        WITH delivered AS (
            SELECT source_id, max(delivery_date) AS last_delivery_date,
                max(ingested_at) AS last_ingested_at, sum(files)::BIGINT AS files,
                sum(rows_delivered)::BIGINT AS rows_delivered
            FROM health_deliveries GROUP BY ALL),
        rejected AS (SELECT source_id, count(*) AS rows_quarantined FROM quarantined GROUP BY ALL)
        SELECT s.source_id, s.title, s.title_en, s.department, s.department_name, s.library,
            s.frequency, s.expected_days, d.last_delivery_date, d.last_ingested_at,
            coalesce(d.files, 0) AS files, coalesce(d.rows_delivered, 0) AS rows_delivered,
            coalesce(r.rows_quarantined, 0) AS rows_quarantined,
            (SELECT as_of FROM serving_info) - d.last_delivery_date AS days_since_delivery,
            (d.last_delivery_date + s.due_interval::INTERVAL)::DATE AS due_by,
            coalesce((SELECT as_of FROM serving_info) <= (d.last_delivery_date + s.due_interval::INTERVAL),
                false) AS is_fresh,
            CASE WHEN d.last_delivery_date IS NULL THEN '未交付 never delivered'
                WHEN (SELECT as_of FROM serving_info) <= (d.last_delivery_date + s.due_interval::INTERVAL)
                THEN '按时 fresh' ELSE '延迟 late' END AS freshness
        FROM ref_source s LEFT JOIN delivered d USING (source_id)
        LEFT JOIN rejected r USING (source_id)
        ORDER BY s.source_id
    """)

    results = scan("ops", "quality_results")
    if results is None:
        results = (
            "(SELECT NULL::VARCHAR AS run_id, NULL::TIMESTAMPTZ AS checked_at,"
            " NULL::VARCHAR AS layer, NULL::VARCHAR AS table_name, NULL::VARCHAR AS expectation,"
            " NULL::VARCHAR AS column_name, NULL::VARCHAR AS severity, NULL::BOOLEAN AS success,"
            " NULL::BIGINT AS element_count, NULL::BIGINT AS unexpected_count,"
            " NULL::DOUBLE AS unexpected_percent, NULL::BIGINT AS table_version WHERE false)"
        )
    # unexpected_examples is left out: masked by the runner, yet no dashboard needs row values.
    con.execute(f"""
        CREATE TABLE health_quality_results AS
        SELECT run_id, checked_at, checked_at::DATE AS checked_date, layer, table_name,
            expectation, column_name, severity, success, element_count, unexpected_count,
            unexpected_percent, table_version,
            CASE WHEN success THEN '通过 passed' WHEN severity = 'hard' THEN '失败 failed'
                ELSE '警告 warning' END AS outcome
        FROM {results} ORDER BY checked_at, run_id, expectation, column_name
    """)
    con.execute("""
        CREATE TABLE health_quality_gate AS
        WITH runs AS (
            SELECT layer, table_name, run_id, max(checked_at) AS checked_at,
                max(table_version) AS table_version, count(*) AS expectations,
                count(*) FILTER (WHERE NOT success AND severity = 'hard') AS hard_failures,
                count(*) FILTER (WHERE NOT success AND severity = 'soft') AS warnings
            FROM health_quality_results GROUP BY ALL)
        SELECT *, hard_failures = 0 AS passed,
            CASE WHEN hard_failures = 0 THEN '通过 passed' ELSE '未通过 blocked' END AS gate
        FROM runs QUALIFY row_number() OVER (PARTITION BY layer, table_name
                                             ORDER BY checked_at DESC) = 1
        ORDER BY layer, table_name
    """)

    run_log = scan("ops", "run_log")
    present = set(_columns_of(con, run_log)) if run_log else set()
    items = []
    for name, kind in RUN_COLUMNS.items():
        source = name if name in present else RUN_COLUMN_FALLBACKS.get(name)
        if source not in present:
            items.append(f'NULL::{kind} AS "{name}"')
        elif kind == "DATE":  # citylake.orchestration logs logical_date as ISO text
            items.append(
                f'TRY_CAST(substr(CAST("{source}" AS VARCHAR), 1, 10) AS DATE) AS "{name}"'
            )
        else:
            items.append(f'TRY_CAST("{source}" AS {kind}) AS "{name}"')
    columns = ", ".join(items)
    source = run_log or "(SELECT 1 WHERE false)"
    con.execute(f"CREATE TABLE health_runs AS SELECT {columns} FROM {source}")
    con.execute("""
        CREATE OR REPLACE TABLE health_runs AS
        SELECT *, CASE WHEN state IN ('success', 'succeeded') THEN '成功 success'
                  WHEN state IN ('failed', 'upstream_failed') THEN '失败 failed'
                  ELSE coalesce(state, '未知 unknown') END AS outcome
        FROM health_runs ORDER BY started_at
    """)


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
            listed = ", ".join(f'"{c}"' for c in table.column_names)
            clear.execute(f"CREATE TABLE {table.name} AS SELECT {listed} FROM {relation}")
        counts[table.name] = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
        catalog_rows.append(
            (table.name, table.library, table.grain, versions.get(table.name), counts[table.name])
        )
    con.execute(
        "CREATE TABLE serving_tables (table_name VARCHAR, library VARCHAR, grain VARCHAR,"
        " gold_version BIGINT, rows BIGINT)"
    )
    con.executemany("INSERT INTO serving_tables VALUES (?, ?, ?, ?, ?)", catalog_rows)
    for name, sql in MARTS.items():
        con.execute(f"CREATE {kind} {name} AS {sql}")
    _health_tables(con, scan, contracts)
    return counts


# ----------------------------------------------------------------------------- the publication


def restricted_file(env: Environment) -> Path:
    return env.root / "serving" / "restricted" / "city_clear.duckdb"


def serving_pepper(env: Environment) -> str:
    """The secret mixed into <column>_key hashes, generated once (an unsalted SHA-256 of an
    18-digit ID number is reversed by trying every birth date and sequence number)."""
    import secrets

    path = env.secrets / "serving_pepper"
    if not path.exists():
        env.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_suffix(".partial")
        partial.write_text(secrets.token_urlsafe(32))
        partial.chmod(0o600)
        os.replace(partial, path)
    return path.read_text().strip()


def default_as_of(con: duckdb.DuckDBPyConnection, scan: Scan) -> dt.date:
    """The newest delivery date in ops.ingest_manifest: 'this month' is the data's month."""
    manifest = scan("ops", "ingest_manifest")
    if manifest is not None:
        newest = con.execute(f"SELECT max(delivery_date) FROM {manifest}").fetchone()[0]
        if newest is not None:
            return newest
    return dt.date.today()


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.building")
    staging.unlink(missing_ok=True)
    staging.with_name(staging.name + ".wal").unlink(missing_ok=True)
    return staging


def served_state(env: Environment, versions: dict[str, int | None]) -> dict:
    """What a publication is made of: the gold versions served and the versions of every ops and
    quarantine table the health tables read. The same state twice needs no new file."""
    state = {"gold": versions}
    for layer in ("ops", "quarantine"):
        state[layer] = {
            table.name: latest_version(table) for table in delta_tables(env.lake_root / layer)
        }
    return state


def _served_before(target: Path) -> dict | None:
    if not target.exists():
        return None
    try:
        with duckdb.connect(str(target), read_only=True) as con:
            (text,) = con.execute("SELECT state_json FROM serving_info").fetchone()
        return json.loads(text)
    except (duckdb.Error, TypeError, ValueError):
        return None  # an older file without the state, or a damaged one: publish anew


def served_versions(env: Environment) -> tuple[dict[str, int | None], list[str]]:
    """Per gold table the version to serve: the newest one whose gate passed (a newer version
    not judged yet waits for its own gate); None for a table not built yet. Also the tables
    still missing. Raises PublicationBlocked for a table of which no version ever passed."""
    scan = delta_scan(env)
    with duckdb.connect() as con:
        load_extensions(con, "delta")
        passed = passed_versions(con, scan)
    versions: dict[str, int | None] = {}
    missing = []
    for table in GOLD_TABLES:
        current = latest_version(env.table_path("gold", table.name))
        if current is None:
            versions[table.name] = None
            missing.append(table.name)
            continue
        if table.name not in passed:
            raise PublicationBlocked(
                f"gold.{table.name}: no version has passed its quality gate yet (newest: "
                f"{current}); the serving file is unchanged"
            )
        versions[table.name] = passed[table.name]
    return versions, missing


def publish(
    env: Environment,
    city: City,
    contracts: dict[str, SourceContract] | None = None,
    as_of: dt.date | None = None,
) -> dict:
    """Build new serving files from gate-passed gold and swap them in; returns what was served.

    The as-of date shown ('this month' on the dashboards) is the newest as-of date of the gold
    versions served, else `as_of`, else the newest delivery. Nothing is rebuilt when the state to
    serve (served_state) is the one the current file was built from."""
    from citylake.lake import citylake_metadata, commit_info

    if contracts is None:
        from citylake.config import load_contracts

        contracts = load_contracts()
    started = time.perf_counter()
    target, clear_target = env.serving_file, restricted_file(env)
    versions, missing = served_versions(env)
    state = served_state(env, versions)
    if _served_before(target) == state and restricted_file(env).exists():
        return {
            "serving_file": str(target),
            "versions": versions,
            "missing": missing,
            "skipped": True,
            "reason": "the gate-passed gold versions and the ops tables are those already served",
            "as_of": None,
        }
    days = [
        citylake_metadata(commit_info(env.table_path("gold", name), version)).get("as_of")
        for name, version in versions.items()
        if version is not None
    ]
    days = [dt.date.fromisoformat(d) for d in days if d]
    scan = delta_scan(env, versions)
    staging, clear_staging = _staging(target), _staging(clear_target)
    clear_target.parent.chmod(0o700)
    con = duckdb.connect(str(staging))
    clear = duckdb.connect(str(clear_staging))
    try:
        load_extensions(con, "delta")
        load_extensions(clear, "delta")
        shown = max(days) if days else as_of or default_as_of(con, scan)
        counts = build_serving(
            con, scan, city, contracts, shown, serving_pepper(env), versions, clear
        )
        con.execute("ALTER TABLE serving_info ADD COLUMN state_json VARCHAR")
        con.execute("UPDATE serving_info SET state_json = ?", [json.dumps(state, sort_keys=True)])
        con.execute("CHECKPOINT")
        clear.execute("CHECKPOINT")
    except BaseException:
        con.close()
        clear.close()
        staging.unlink(missing_ok=True)
        clear_staging.unlink(missing_ok=True)
        raise
    con.close()
    clear.close()
    clear_staging.chmod(0o600)
    os.replace(staging, target)
    os.replace(clear_staging, clear_target)
    return {
        "serving_file": str(target),
        "restricted_file": str(clear_target),
        "tables": counts,
        "versions": versions,
        "missing": missing,
        "as_of": shown.isoformat(),
        "skipped": False,
        "seconds": round(time.perf_counter() - started, 3),
    }


# ----------------------------------------------------------------------------- analysts' SQL


def lake_connection(
    env: Environment, layers: tuple[str, ...] = ("gold",)
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per Delta table of the given layers (gold.<table>, ...),
    the delta extension loaded from its PyPI package. What `citylake sql` runs on:

        con = lake_connection(env)
        con.sql("SELECT division_name, count(*) FROM gold.population__person GROUP BY 1").show()
    """
    con = duckdb.connect()
    load_extensions(con, "delta", "spatial")
    for layer in layers:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
        for table in delta_tables(env.lake_root / layer):
            con.execute(
                f'CREATE VIEW "{layer}"."{table.name}" AS SELECT * FROM {delta_relation(table)}'
            )
    return con


__all__ = [
    "LINEAGE",
    "MARTS",
    "PublicationBlocked",
    "build_serving",
    "lake_connection",
    "publish",
]


def main(argv: list[str] | None = None) -> None:
    """`python -m pipelines.publish sql "SELECT ..."`: DuckDB over the lake's Delta tables."""
    import argparse

    from citylake.config import settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["sql"])
    parser.add_argument("query", help="SQL over gold.<table> (and --layers' schemas)")
    parser.add_argument("--layers", default="gold", help="comma-separated, e.g. gold,silver,ops")
    args = parser.parse_args(argv)
    env, _, _ = settings()
    with lake_connection(env, tuple(args.layers.split(","))) as con:
        con.sql(args.query).show(max_rows=200, max_width=200)


if __name__ == "__main__":
    main()
