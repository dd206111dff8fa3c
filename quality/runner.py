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
import functools
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citylake import catalogue, masking
from citylake.config import City, ConfigError, Environment, SourceContract
from citylake.errors import CityLakeError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SUITES_DIR = Path(str(files("quality").joinpath("suites")))
LAYERS = ("bronze", "silver", "gold")
BRONZE_LINEAGE = ("_source_file", "_batch_id", "_ingested_at", "_delivery_date", "_row_number")
SILVER_HISTORY = ("valid_from", "valid_to", "is_current")
EXAMPLES = 5  # unexpected values kept per expectation (masked when personal)
# Personal columns come from the contracts (silver) and the metadata files (gold); besides them,
# a value shaped like an ID number or a mobile number is masked whatever its column.


class QualityGateFailed(CityLakeError, RuntimeError):
    """A hard expectation failed: what follows (standardize, build, publish) must not run."""


class ExpectationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    severity: Literal["hard", "soft"]
    kwargs: dict[str, Any] = {}
    when: dict[str, Any] | None = Field(
        default=None, description="{column: value or [values]}: the rows it applies to"
    )
    notes: str | None = None


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    layer: Literal["bronze", "silver", "gold"]
    description: str | None = None
    expectations: list[ExpectationSpec] = []


@dataclass(frozen=True)
class Suite:
    spec: SuiteSpec  # the whole suite: generated expectations first, then the file's
    path: Path | None  # the YAML file, if the table has one
    expectations: list  # great_expectations Expectation objects, in spec order
    columns: tuple[str, ...]  # the table's columns as the suite knows them
    personal: Mapping[str, str]  # column → personal-data kind: its values are masked in results

    @property
    def name(self) -> str:
        return f"{self.spec.layer}.{self.spec.table}"

    @property
    def origin(self) -> str:
        return str(self.path) if self.path else "generated"


# ----------------------------------------------------------------------------- what a table is


def _contracts() -> dict[str, SourceContract]:
    from citylake.config import settings

    return settings()[2]


def contract_of(layer: str, table: str, contracts: dict[str, SourceContract]) -> SourceContract:
    if layer == "bronze":
        if table in contracts:
            return contracts[table]
    else:
        for contract in contracts.values():
            if contract.silver_table == table:
                return contract
    raise ConfigError(f"{layer}.{table}: no source contract in conf/sources/ defines this table")


def tables(contracts: dict[str, SourceContract]) -> list[tuple[str, str]]:
    """Every (layer, table) that has a suite: one per bronze, silver and gold table."""
    found = [("bronze", c.source_id) for c in contracts.values()]
    found += [("silver", s) for s in sorted({c.silver_table for c in contracts.values()})]
    found += [("gold", t.name) for t in catalogue.GOLD_TABLES]
    return found


def _derived(contract: SourceContract) -> list[str]:
    """Columns silver adds beside a contract column (what pipelines/standardize.py derives)."""
    extra = []
    for column in contract.columns:
        if column.type == "id_number":
            extra += [f"{column.name}_{s}" for s in ("birth_date", "sex", "division")]
        elif column.type == "credit_code":
            extra += [f"{column.name}_{s}" for s in ("authority", "entity_type", "division")]
    return extra


def table_columns(layer: str, table: str, contracts: dict[str, SourceContract]) -> tuple[str, ...]:
    if layer == "gold":
        return tuple(catalogue.gold_table(table).column_names)
    contract = contract_of(layer, table, contracts)
    if layer == "bronze":
        return (*contract.column_names, "_malformed_line", *BRONZE_LINEAGE)
    return (*contract.column_names, *_derived(contract), *BRONZE_LINEAGE, *SILVER_HISTORY)


def personal_columns(layer: str, table: str, contracts: dict[str, SourceContract]) -> dict:
    """Column → personal-data kind (citylake.masking): the metadata file's for gold, the
    contract's for bronze and silver, plus what is derived from personal values ("text")."""
    if layer == "gold":
        return {c: p.kind for c, p in catalogue.gold_table(table).personal.items()}
    contract = contract_of(layer, table, contracts)
    personal = {c.name: c.pii for c in contract.columns if c.pii}
    personal |= {f"{c.name}_birth_date": "text" for c in contract.columns if c.type == "id_number"}
    return personal | {"_malformed_line": "text"}


# ----------------------------------------------------------------------------- generated suites


def _e(type_: str, severity: str, notes: str | None = None, **kwargs) -> dict:
    return {"type": type_, "severity": severity, "kwargs": kwargs, "notes": notes}


def _key_rules(key: list[str], severity: str) -> list[dict]:
    rules = [_e("expect_column_values_to_not_be_null", severity, column=k) for k in key]
    if len(key) == 1:
        rules.append(_e("expect_column_values_to_be_unique", severity, column=key[0]))
    else:
        rules.append(_e("expect_compound_columns_to_be_unique", severity, column_list=list(key)))
    return rules


def _content_rules(contract: SourceContract, severity: str, layer: str) -> list[dict]:
    """The contract's per-column rules: what standardize enforces, as expectations."""
    rules: list[dict] = []
    for column in contract.columns:
        name = column.name
        if column.required and name not in contract.business_key:
            rules.append(_e("expect_column_values_to_not_be_null", severity, column=name))
        if column.type == "id_number":
            rules.append(
                _e(
                    "expect_column_values_to_be_valid_id_number",
                    severity,
                    column=name,
                    as_of="$as_of",
                )
            )
        elif column.type == "credit_code":
            rules.append(_e("expect_column_values_to_be_valid_credit_code", severity, column=name))
        elif column.type == "division_code":
            rules.append(
                _e(
                    "expect_column_values_to_be_city_division_code",
                    severity,
                    column=name,
                    division_codes="$city.division_codes",
                )
            )
        elif column.type == "date":
            if layer == "bronze":
                rules.append(_e("expect_column_values_to_be_parseable_date", severity, column=name))
            if not column.future_allowed:  # an expiry (有效期至) may lie ahead
                rules.append(
                    _e(
                        "expect_column_values_to_not_be_in_the_future",
                        severity,
                        column=name,
                        as_of="$as_of",
                    )
                )
        elif column.type == "timestamp":
            # Timestamps are not checked against the delivery date by standardize: a warning.
            rules.append(
                _e(
                    "expect_column_values_to_not_be_in_the_future",
                    "soft",
                    column=name,
                    as_of="$as_of",
                )
            )
        elif column.type == "geometry" and layer == "silver":
            rules.append(_e("expect_column_values_to_be_json_parseable", severity, column=name))
    return rules


def generated_rules(layer: str, table: str, contracts: dict[str, SourceContract]) -> list[dict]:
    columns = table_columns(layer, table, contracts)
    if layer == "gold":
        spec = catalogue.gold_table(table)
        return [
            _e("expect_table_columns_to_match_ordered_list", "hard", column_list=list(columns)),
            _e("expect_table_row_count_to_be_between", "hard", min_value=1),
            *[
                _e("expect_column_values_to_not_be_null", "hard", column=c)
                for c in catalogue.LINEAGE
            ],
            *_key_rules(list(spec.key), "hard"),
        ]
    contract = contract_of(layer, table, contracts)
    if layer == "bronze":
        return [
            _e(
                "expect_table_columns_to_match_set",
                "hard",
                column_set=list(columns),
                exact_match=False,
            ),
            _e("expect_table_row_count_to_be_between", "soft", min_value=1),
            *[_e("expect_column_values_to_not_be_null", "hard", column=c) for c in BRONZE_LINEAGE],
            _e(
                "expect_compound_columns_to_be_unique",
                "hard",
                column_list=["_batch_id", "_row_number"],
            ),
            _e("expect_column_values_to_be_null", "soft", column="_malformed_line"),
            *_key_rules(contract.business_key, "soft"),
            *_content_rules(contract, "soft", layer),
        ]
    required = [*contract.column_names, *BRONZE_LINEAGE]
    per_row = [
        *[_e("expect_column_values_to_not_be_null", "hard", column=c) for c in catalogue.LINEAGE],
        *_key_rules(contract.business_key, "hard"),
        *_content_rules(contract, "hard", layer),
    ]
    history = []
    if contract.history:  # the rows rules are about the current versions; the history as a whole
        per_row = [{**rule, "when": {"is_current": True}} for rule in per_row]
        history = [
            _e(
                "expect_history_to_be_consistent",
                "hard",
                "per key: versions that neither overlap nor leave gaps, valid_from < valid_to, "
                "exactly one current row (SCD type 2)",
                key_columns=list(contract.business_key),
            )
        ]
    return [
        _e("expect_table_columns_to_match_set", "hard", column_set=required, exact_match=False),
        _e("expect_table_row_count_to_be_between", "hard", min_value=1),
        *per_row,
        *history,
    ]


# ----------------------------------------------------------------------------- loading


def suite_path(table: str, layer: str = "gold") -> Path:
    return SUITES_DIR / layer / f"{table}.yaml"


def _resolve(value, city: City, as_of: dt.date | None, where: str):
    """`$city.<attribute>` → conf/city.yaml's value; `$as_of` → the run's logical date."""
    if not (isinstance(value, str) and value.startswith("$")):
        return value
    if value == "$as_of":
        return as_of.isoformat() if as_of else None
    derived = {"division_count": len(city.divisions)}
    name = value.removeprefix("$city.")
    if value.startswith("$city.") and (name in derived or hasattr(city, name)):
        found = derived.get(name, getattr(city, name, None))
        return list(found) if isinstance(found, list | tuple) else found
    raise ConfigError(f"{where}: unknown placeholder '{value}' ($city.<attribute> or $as_of)")


def _row_condition(when: dict[str, Any], where: str):
    from great_expectations.expectations.row_conditions import Column

    condition = None
    for column, value in when.items():
        part = Column(column).is_in(value) if isinstance(value, list) else Column(column) == value
        condition = part if condition is None else condition & part
    if condition is None:
        raise ConfigError(f"{where}: 'when' names no column")
    return condition


def _columns_named(item: ExpectationSpec) -> list[str]:
    kwargs = item.kwargs
    named = [
        kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(kwargs.get(k), str)
    ]
    named += [c for c in kwargs.get("column_list") or [] if isinstance(c, str)]
    return named + list(item.when or {})


def build_expectations(
    spec: SuiteSpec,
    where: str,
    columns: tuple[str, ...],
    city: City,
    as_of: dt.date | None,
) -> list:
    """GX expectation objects for a spec; every problem is a ConfigError naming `where`."""
    from great_expectations.compatibility.pydantic import ValidationError as GxValidationError
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    import quality.expectations  # noqa: F401  (registers the custom expectations)

    built = []
    for index, item in enumerate(spec.expectations):
        at = f"{where}: expectations[{index}] ({item.type})"
        try:
            cls = get_expectation_impl(item.type)
        except ExpectationNotFoundError:
            raise ConfigError(
                f"{where}: expectations[{index}]: unknown expectation '{item.type}' "
                "(a Great Expectations expectation or one of quality/expectations.py)"
            ) from None
        unknown = [c for c in _columns_named(item) if c not in columns]
        if unknown:
            raise ConfigError(
                f"{at}: unknown column(s) {unknown} in {spec.layer}.{spec.table}; "
                f"its columns are {list(columns)}"
            )
        kwargs = {k: _resolve(v, city, as_of, at) for k, v in item.kwargs.items()}
        if item.when:
            kwargs["row_condition"] = _row_condition(item.when, at)
        meta = {"severity": item.severity, **({"notes": item.notes} if item.notes else {})}
        try:
            built.append(cls(**kwargs, meta=meta))
        except (GxValidationError, ValidationError, TypeError, ValueError) as exc:
            raise ConfigError(f"{at}: wrong arguments: {exc}") from exc
    return built


def _read_spec(path: Path) -> SuiteSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return SuiteSpec.model_validate(data)
    except (ValidationError, yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid suite: {exc}") from exc


def load_suite(
    path: Path,
    city: City,
    contracts: dict[str, SourceContract] | None = None,
    as_of: dt.date | None = None,
) -> Suite:
    """The table's whole suite: generated expectations, then the file's (path may not exist for
    bronze and silver tables)."""
    contracts = _contracts() if contracts is None else contracts
    layer = path.parent.name
    if path.exists():
        own = _read_spec(path)
        if (own.layer, own.table) != (layer, path.stem):
            raise ConfigError(
                f"{path}: says table {own.layer}.{own.table}, but the file's place says "
                f"{layer}.{path.stem}; one name travels the whole path, so they must agree"
            )
    elif layer == "gold":
        raise ConfigError(f"{path}: every gold table needs its suite file (business rules)")
    else:
        own = SuiteSpec(table=path.stem, layer=layer)
    try:
        columns = table_columns(layer, own.table, contracts)
        generated = generated_rules(layer, own.table, contracts)
        personal = personal_columns(layer, own.table, contracts)
    except (KeyError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc.args[0]}") from None
    spec = SuiteSpec(
        table=own.table,
        layer=layer,
        description=own.description,
        expectations=[ExpectationSpec(**g) for g in generated] + own.expectations,
    )
    expectations = build_expectations(spec, str(path), columns, city, as_of)
    return Suite(spec, path if path.exists() else None, expectations, columns, personal)


def suite_for(
    layer: str,
    table: str,
    city: City,
    contracts: dict[str, SourceContract] | None = None,
    as_of: dt.date | None = None,
) -> Suite:
    if layer not in LAYERS:
        raise ValueError(f"no suites for layer '{layer}' (one of {', '.join(LAYERS)})")
    return load_suite(suite_path(table, layer), city, contracts, as_of)


def load_all(city: City, contracts: dict[str, SourceContract]) -> list[Suite]:
    """Every table's suite (what a test and `citylake config` check): fails on the first error."""
    found = [suite_for(layer, table, city, contracts) for layer, table in tables(contracts)]
    known = {(s.spec.layer, s.spec.table) for s in found}
    for layer in LAYERS:
        for path in sorted((SUITES_DIR / layer).glob("*.yaml")):
            if (layer, path.stem) not in known:
                raise ConfigError(f"{path}: no {layer} table '{path.stem}' to apply this suite to")
    return found


# ----------------------------------------------------------------------------- validating


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


# ----------------------------------------------------------------------------- a table's gate


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
