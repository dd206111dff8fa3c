"""Running a suite (GX on pandas or on a persisted Spark frame), masking what its results show,
turning them into ops.quality_results rows, and the gate over those rows."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

from citylake import masking
from citylake.config import Environment
from citylake.errors import CityLakeError
from quality.suites import Suite

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


EXAMPLES = 5  # unexpected values kept per expectation (masked when personal)


class QualityGateFailed(CityLakeError, RuntimeError):
    """A hard expectation failed: what follows (standardize, build, publish) must not run."""


def _masked(value, kind: str | None):
    if isinstance(value, dict):
        return {k: _masked(v, kind) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v, kind) for v in value]
    return masking.shown(value, kind)


def _columns_of(kwargs: dict) -> list[str]:
    named = [kwargs[k] for k in ("column", "column_A", "column_B") if kwargs.get(k)]
    return named + list(kwargs.get("column_list") or [])


def mask_result(result, personal: Mapping[str, str]) -> None:
    """Mask, in place, the values a GX expectation result shows (examples, counts, observations),
    by the kind of the first personal column the expectation names."""
    stats = result.result or {}
    named = [c for c in _columns_of(result.expectation_config.kwargs) if c in personal]
    is_personal = personal[named[0]] if named else None
    for key in (
        "partial_unexpected_list",
        "unexpected_list",
        "partial_unexpected_index_list",
        "unexpected_index_list",
    ):
        if stats.get(key):
            stats[key] = _masked(stats[key], is_personal)
    for key in ("partial_unexpected_counts", "unexpected_counts"):
        if stats.get(key):
            stats[key] = [
                {**item, "value": _masked(item.get("value"), is_personal)} for item in stats[key]
            ]


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


def _args(kwargs: dict) -> str:
    shown = {}
    for key, value in kwargs.items():
        if key in ("column", "batch_id") or value is None:
            continue
        if isinstance(value, list) and len(value) > 12:
            value = [*value[:12], f"... {len(value)} in all"]
        shown[key] = _plain(value)
    return json.dumps(shown, ensure_ascii=False, sort_keys=True)


def _exception_message(result) -> str | None:
    """The message of an expectation that could not be evaluated (GX nests it by metric)."""
    info = getattr(result, "exception_info", None) or {}
    candidates = [info, *[v for v in info.values() if isinstance(v, dict)]]
    for item in candidates:
        if item.get("raised_exception"):
            return str(item.get("exception_message"))
    return None


def _row(result, suite: Suite, run_id: str, table_version, checked_at, logical_date) -> dict:
    config = result.expectation_config
    kwargs = config.kwargs
    stats = result.result or {}
    examples = stats.get("partial_unexpected_list") or []
    error = _exception_message(result)
    if error:
        shown = f"error: {error[:300]}"
    elif examples:
        shown = ", ".join(
            json.dumps(_plain(v), ensure_ascii=False) if not isinstance(v, str) else v
            for v in examples[:EXAMPLES]
        )
    elif not result.success and stats.get("observed_value") is not None:
        detail = stats.get("details") or {}
        mismatch = detail.get("mismatched") if isinstance(detail, dict) else None
        shown = json.dumps(_plain(mismatch or stats["observed_value"]), ensure_ascii=False)[:300]
    else:
        shown = None
    observed = stats.get("observed_value")
    element_count = stats.get("element_count")
    if element_count is None and isinstance(observed, int) and not isinstance(observed, bool):
        element_count = observed  # row-count expectations observe the count itself
    columns = _columns_of(kwargs)
    return {
        "run_id": run_id,
        "checked_at": checked_at,
        "layer": suite.spec.layer,
        "table_name": suite.spec.table,
        "expectation": config.type,
        "column_name": ",".join(columns) or None,
        "severity": config.meta["severity"],
        "success": bool(result.success),
        "element_count": element_count,
        "unexpected_count": stats.get("unexpected_count"),
        "unexpected_percent": stats.get("unexpected_percent"),
        "unexpected_examples": shown,
        "table_version": table_version,
        "suite_name": suite.name,
        "expectation_args": _args(kwargs),
        "logical_date": logical_date,
    }


@functools.cache
def _context():
    """One ephemeral GX context per process: no files, no shared state between tasks."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def run_suite(frame, suite: Suite, result_format: str | dict = "SUMMARY", expectations=None):
    """One GX validation of the suite (or of some of its expectations) on a pandas or a Spark
    DataFrame (GX's engine follows the frame); the raw GX result."""
    import great_expectations as gx
    import pandas as pd

    context = _context()
    name = f"{suite.spec.layer}__{suite.spec.table}__{uuid.uuid4().hex[:8]}"
    if isinstance(frame, pd.DataFrame):
        source = context.data_sources.add_pandas(name=name)
    else:
        source = context.data_sources.add_spark(name=name)
    try:
        batch = (
            source.add_dataframe_asset(name=name)
            .add_batch_definition_whole_dataframe("whole")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        chosen = suite.expectations if expectations is None else expectations
        gx_suite = gx.ExpectationSuite(name=suite.name, expectations=chosen)
        return batch.validate(gx_suite, result_format=result_format)
    finally:
        context.data_sources.delete(name)


def _key(config) -> tuple[str, str]:
    """An expectation's identity in a result (GX adds the batch to the arguments it reports)."""
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    return config.type, json.dumps(kwargs, sort_keys=True, default=str)


def _is_map(expectation) -> bool:
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    return isinstance(
        expectation, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
    )


def _settled(expectation, result) -> bool:
    """A passed expectation that tolerates no failure: its figures are known without asking
    Spark again (row-by-row: 0 unexpected of the frame's rows; nothing to show either way)."""
    mostly = getattr(expectation, "mostly", None) or expectation.configuration.kwargs.get("mostly")
    return result.success and (mostly is None or mostly >= 1.0)


def run_suite_fast(frame, suite: Suite):
    """The SUMMARY result of the whole suite in at most two passes, each one GX validation.

    Pass 1 asks only for success (BOOLEAN_ONLY): GX then needs just the unexpected counts, which
    it bundles into a few aggregations. Pass 2 asks for the summary (counts, percentages and
    unexpected examples) of the expectations that failed or tolerate some failures (`mostly`). A
    passed expectation is settled by pass 1: a row-by-row one had 0 unexpected of the frame's
    rows; a table-level one (row count, column set) is recorded without its observed value. On a
    suite that mostly passes this does about a third of the Spark jobs of one SUMMARY pass."""
    first = run_suite(frame, suite, "BOOLEAN_ONLY")
    by_key = {_key(e.configuration): e for e in suite.expectations}
    pending = [
        by_key[_key(r.expectation_config)]
        for r in first.results
        if not _settled(by_key[_key(r.expectation_config)], r)
    ]
    detailed = {}
    if pending:
        second = run_suite(frame, suite, "SUMMARY", expectations=pending)
        detailed = {_key(r.expectation_config): r for r in second.results}
    rows = None
    for index, result in enumerate(first.results):
        key = _key(result.expectation_config)
        if key in detailed:
            first.results[index] = detailed[key]
            continue
        if rows is None:
            rows = frame.count()
        result.result = {"element_count": rows}
        if _is_map(by_key[key]):
            result.result |= {
                "unexpected_count": 0,
                "unexpected_percent": 0.0,
                "partial_unexpected_list": [],
            }
    return first


def validate(
    frame,
    suite: Suite,
    run_id: str,
    table_version: int | None,
    logical_date: dt.date | None = None,
    outcome_sink: list | None = None,
) -> list[dict]:
    """Run a suite on a Spark DataFrame; one result row per expectation (nothing raised here).

    Personal values are masked in the rows and in the GX result (appended to outcome_sink when
    given, for Data Docs)."""
    # On pandas a SUMMARY pass costs milliseconds. On Spark, bronze suites measure what
    # departments sent: failures are normal there and would all need the second pass anyway, so
    # one SUMMARY pass is cheaper; silver and gold mostly pass (two passes, see run_suite_fast).
    import pandas as pd

    if isinstance(frame, pd.DataFrame) or suite.spec.layer == "bronze":
        outcome = run_suite(frame, suite, "SUMMARY")
    else:
        outcome = run_suite_fast(frame, suite)
    checked_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = []
    for result in outcome.results:
        mask_result(result, suite.personal)
        rows.append(_row(result, suite, run_id, table_version, checked_at, logical_date))
    if outcome_sink is not None:
        outcome_sink.append(outcome)
    return rows


def gate(rows: list[dict]) -> None:
    """Raise QualityGateFailed naming each failed hard expectation and its unexpected count."""
    failed = [r for r in rows if r["severity"] == "hard" and not r["success"]]
    if failed:
        lines = [
            f"{r['layer']}.{r['table_name']}: {r['expectation']}"
            + (f"({r['column_name']})" if r["column_name"] else "")
            + f" failed: {r['unexpected_count']} unexpected of {r['element_count']}"
            + (f" (e.g. {r['unexpected_examples']})" if r["unexpected_examples"] else "")
            for r in failed
        ]
        raise QualityGateFailed("quality gate failed, not going on:\n  " + "\n  ".join(lines))


def describe(rows: list[dict]) -> str:
    ok = sum(r["success"] for r in rows)
    return f"{ok}/{len(rows)} expectations passed"


def validations_dir(env: Environment) -> Path:
    return env.root / "quality" / "validations"


def save_outcome(env: Environment, suite: Suite, run_id: str, outcome) -> Path:
    """Keep the masked GX result (and its suite) as JSON for Data Docs."""
    folder = validations_dir(env) / suite.spec.layer / suite.spec.table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}.json"
    document = {
        "run_id": run_id,
        "suite": {
            "name": suite.name,
            "expectations": [e.configuration.to_json_dict() for e in suite.expectations],
        },
        "result": outcome.to_json_dict(),
    }
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(document, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(staging, path)
    return path
