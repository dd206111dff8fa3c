"""Great Expectations suites for every bronze, silver and gold table, run on pandas or Spark.

Where a suite comes from (one suite per table; the name is the table's):

* bronze.<source_id> and silver.<entity>: generated from the source contract
  (conf/sources/<source_id>.yaml) — structure and lineage hard, the contract's content rules
  (required values, ID numbers, credit codes, division codes, dates) hard in silver and soft in
  bronze, where they measure what the department sent (the quarantine already rejects those
  rows). A table that needs more adds quality/suites/<layer>/<table>.yaml; its expectations are
  appended to the generated ones.
* gold.<library>__<entity>: generated from base_libraries/<table>.yml (the exact column list, row
  count, lineage, and every key not null and unique) plus the table's business rules in
  quality/suites/gold/<table>.yaml, which every gold table must have.

A suite file is data: `table`, `layer`, and `expectations`, each with `type` (a GX expectation,
built-in or one of quality/expectations.py), `severity` (hard: a failure blocks what follows;
soft: recorded as a warning), `kwargs`, and optionally `when` ({column: value or [values]}: the
rows the expectation applies to) and `notes`. `$city.<attribute>` and `$as_of` in kwargs stand for
values of conf/city.yaml and the run's logical date. Anything wrong — unknown expectation, wrong
argument, unknown column — is a ConfigError at load naming the file and the expectation.

One validation per table version: on pandas for tables of up to PANDAS_MAX_ROWS rows (DuckDB
reads the Delta version; a suite costs milliseconds there, where Spark's many small jobs cost
seconds), on a persisted Spark frame above (silver and gold in two GX passes, see run_suite_fast:
success first, the summary of what failed second). The custom expectations give both engines the
quarantine's own rules (quality/expectations.py). Results land in ops.quality_results, one row
per expectation, with personal data masked in the examples, and the masked GX result is kept for
Data Docs (quality/docs.py).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

from quality.suites import Suite, suite_for
from quality.validation import describe, gate, save_outcome, validate

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _references(suite: Suite) -> list[tuple[str, str]]:
    """(other_table, other_column) of the suite's referential expectations."""
    return [
        (e.configuration.kwargs["other_table"], e.configuration.kwargs["other_column"])
        for e in suite.expectations
        if e.configuration.type == "expect_column_values_to_be_found_in_table"
    ]


def _frame_filter(layer: str, logical_date, batches) -> tuple[str, list]:
    """The rows a validation covers, as a SQL condition: bronze its batches (or its day)."""
    if layer == "bronze" and batches:
        return f"_batch_id IN ({', '.join('?' for _ in batches)})", list(batches)
    if layer == "bronze" and logical_date is not None:
        return "_delivery_date = ?", [logical_date]
    return "true", []


def _pandas_frame(lake, relation: str, where: str, parameters: list):
    """The rows as pandas, instants as the city's wall-clock time (what Spark's session shows)."""
    import pandas as pd

    from citylake.config import CITY_TIMEZONE

    frame = lake.arrow(f"SELECT * FROM {relation} WHERE {where}", parameters).to_pandas()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert(CITY_TIMEZONE).dt.tz_localize(None)
    return frame


def _judged(lake, layer: str, table: str, version: int) -> list[dict] | None:
    """The recorded results of the last validation of this version, if there was one."""
    from pipelines import ops

    relation = lake.scan("ops", ops.QUALITY_RESULTS)
    if relation is None:
        return None
    table_rows = lake.arrow(
        f"""SELECT * FROM {relation} WHERE run_id = (
                SELECT max_by(run_id, checked_at) FROM {relation}
                WHERE layer = ? AND table_name = ? AND table_version = ? AND batch_ids IS NULL)""",
        [layer, table, version],
    )
    rows = table_rows.to_pylist()
    return rows or None


def bronze_verdicts(lake, source_id: str) -> dict[str, bool]:
    """batch id → whether its latest bronze validation passed every hard expectation."""
    from pipelines import ops

    relation = lake.scan("ops", ops.QUALITY_RESULTS)
    if relation is None:
        return {}
    rows = lake.query(
        f"""WITH runs AS (
                SELECT run_id, any_value(batch_ids) AS batch_ids, max(checked_at) AS checked_at,
                    bool_and(success OR severity = 'soft') AS passed
                FROM {relation} WHERE layer = 'bronze' AND table_name = ? AND batch_ids IS NOT NULL
                GROUP BY run_id)
            SELECT batch_id, max_by(passed, checked_at)
            FROM (SELECT unnest(string_split(batch_ids, ',')) AS batch_id, passed, checked_at
                  FROM runs)
            GROUP BY batch_id""",
        [source_id],
    )
    return dict(rows)


def _summary(layer, table, version, run_id, rows, validation: str | None) -> dict:
    failed = [r for r in rows if not r["success"]]
    return {
        "table": f"{layer}.{table}",
        "version": version,
        "run_id": run_id,
        "result": describe(rows),
        "failed_hard": [_label(r) for r in failed if r["severity"] == "hard"],
        "warnings": [_label(r) for r in failed if r["severity"] == "soft"],
        "validation": validation,
    }


def check_table(
    lake,
    layer: str,
    table: str,
    logical_date: dt.date | None = None,
    run_id: str | None = None,
    batches: list[str] | None = None,
    again: bool = False,
) -> dict:
    """Validate a table's current Delta version, record the results, and gate.

    bronze: the given batches (else the rows delivered on logical_date); silver: the current rows
    (a history table's whole history for its history rules); gold: every row. A silver or gold
    version is judged once: asked again (a rerun of the day), the recorded verdict stands and a
    failed one fails again, unless `again`. Tables of up to quality.pandas_max_rows rows (conf/)
    are validated on pandas (DuckDB reads the pinned version), larger ones on Spark. Results are
    appended to ops.quality_results, the masked GX result is kept for Data Docs, and
    QualityGateFailed is raised — after recording — when a hard expectation failed.
    """
    from citylake.config import settings
    from pipelines import ops

    env, city, contracts = settings()
    version = lake.version(layer, table)
    if layer != "bronze" and not again:
        judged = _judged(lake, layer, table, version)
        if judged is not None:
            summary = _summary(layer, table, version, judged[0]["run_id"], judged, None)
            gate(judged)
            return {**summary, "skipped": True, "reason": f"version {version} already judged"}
    suite = suite_for(layer, table, city, contracts, as_of=logical_date)
    run_id = run_id or f"{layer}.{table}:{version}:{uuid.uuid4().hex[:8]}"
    where, parameters = _frame_filter(layer, logical_date, batches)
    relation = lake.scan(layer, table, version)
    ((rows_in_scope,),) = lake.query(f"SELECT count(*) FROM {relation} WHERE {where}", parameters)
    outcomes: list = []
    engine = "pandas" if rows_in_scope <= env.quality.pandas_max_rows else "spark"
    if engine == "pandas":
        rows = _validate_pandas(lake, suite, relation, where, parameters, run_id, version,
                                logical_date, outcomes)  # fmt: skip
    else:
        rows = _validate_spark(lake, suite, layer, table, version, where, parameters, run_id,
                               logical_date, outcomes)  # fmt: skip
    batch_ids = ",".join(batches) if layer == "bronze" and batches else None
    ops.append(lake, ops.QUALITY_RESULTS, [{**r, "batch_ids": batch_ids} for r in rows])
    saved = save_outcome(lake.env, suite, run_id, outcomes[0])
    summary = _summary(layer, table, version, run_id, rows, str(saved))
    summary["engine"] = engine
    gate(rows)
    return summary


def _validate_pandas(lake, suite, relation, where, parameters, run_id, version, day, outcomes):
    from quality.expectations import register_reference, unregister_reference

    frame = _pandas_frame(lake, relation, where, parameters)
    registered = []
    for other, column in _references(suite):
        layer, name = other.split(".", 1)
        other_relation = lake.scan(layer, name)
        if other_relation is not None:
            keys = lake.query(f'SELECT DISTINCT "{column}" FROM {other_relation}')
            register_reference(other, (k for (k,) in keys))
            registered.append(other)
    try:
        return validate(frame, suite, run_id, version, day, outcomes)
    finally:
        for other in registered:
            unregister_reference(other)


def _validate_spark(lake, suite, layer, table, version, where, parameters, run_id, day, outcomes):
    from pyspark.sql import functions as F

    from quality.expectations import reference_view

    frame = lake.read(layer, table, version=version)
    if layer == "bronze" and parameters:
        column = "_batch_id" if where.startswith("_batch_id") else "_delivery_date"
        frame = frame.where(F.col(column).isin(parameters))
    views = []
    for other, _ in _references(suite):
        other_layer, name = other.split(".", 1)
        if lake.exists(other_layer, name):
            lake.read(other_layer, name).createOrReplaceTempView(reference_view(other))
            views.append(reference_view(other))
    frame = frame.persist()
    try:
        return validate(frame, suite, run_id, version, day, outcomes)
    finally:
        frame.unpersist()
        for view in views:
            lake.spark.catalog.dropTempView(view)


def _label(row: dict) -> str:
    column = f"({row['column_name']})" if row["column_name"] else ""
    count = f": {row['unexpected_count']} unexpected" if row["unexpected_count"] else ""
    return f"{row['expectation']}{column}{count}"
