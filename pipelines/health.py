"""The data-health tables of the serving file, from ops.* and quarantine.*: deliveries, quarantine
by reason, each source's freshness, quality results and gates, the task runs, and the data
service's accesses (health_access, for the security officer's sharing audit). The dashboards read
them; each works (empty) before its ops table exists.
"""

from __future__ import annotations

import duckdb

from citylake.config import SourceContract
from citylake.lake import Scan, columns_of
from citylake.lake import sql_text as _sql_text

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
# ops.run_log (pipelines/ops.py, written by citylake/orchestration/policy.py) logs one row per
# task event at logged_at.
RUN_COLUMN_FALLBACKS = {"started_at": "logged_at", "ended_at": "logged_at"}


def health_tables(
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
    present = set(columns_of(con, run_log)) if run_log else set()
    items = []
    for name, kind in RUN_COLUMNS.items():
        source = name if name in present else RUN_COLUMN_FALLBACKS.get(name)
        if source not in present:
            items.append(f'NULL::{kind} AS "{name}"')
        elif kind == "DATE":  # citylake.orchestration.policy logs logical_date as ISO text
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


# The outcomes of ops.access_log (citylake/service/audit.py), as the audit dashboard names them.
ACCESS_OUTCOMES = {
    "granted": "准予 granted",
    "denied": "拒绝 denied",
    "refused": "不合规 refused",
    "error": "错误 error",
}


def access_table(con: duckdb.DuckDBPyConnection, scan: Scan) -> None:
    """health_access: the data service's requests per city day, consumer, service, resource,
    outcome and reason, with the denials, the reads of personal data in clear and the rows
    returned. No path, token or grant id: the state database keeps those for the officer."""
    log = scan("ops", "access_log") or (
        "(SELECT NULL::TIMESTAMPTZ AS at, NULL::VARCHAR AS consumer, NULL::VARCHAR AS service,"
        " NULL::VARCHAR AS resource, NULL::VARCHAR AS outcome, NULL::VARCHAR AS reason,"
        " NULL::VARCHAR AS clear_fields, NULL::BIGINT AS rows_returned WHERE false)"
    )
    outcomes = " ".join(
        f"WHEN {_sql_text(k)} THEN {_sql_text(v)}" for k, v in ACCESS_OUTCOMES.items()
    )
    con.execute(f"""
        CREATE TABLE health_access AS
        SELECT CAST(timezone('Asia/Shanghai', a.at) AS DATE) AS access_date,
            coalesce(a.consumer, '') AS consumer,
            coalesce(c.name, '未识别 unidentified') AS consumer_name,
            coalesce(a.service, '') AS service,
            coalesce(a.resource, '（无资源 none: token, application）') AS resource,
            CASE a.outcome {outcomes} ELSE a.outcome END AS outcome,
            coalesce(a.reason, '') AS reason,
            count(*)::BIGINT AS requests,
            (count(*) FILTER (WHERE a.outcome = 'denied'))::BIGINT AS denials,
            (count(*) FILTER (WHERE coalesce(a.clear_fields, '[]') NOT IN ('[]', 'null')))::BIGINT
                AS personal_reads,
            coalesce(sum(a.rows_returned), 0)::BIGINT AS rows_returned
        FROM {log} a LEFT JOIN ref_consumer c ON c.consumer = a.consumer
        GROUP BY ALL ORDER BY ALL
    """)
