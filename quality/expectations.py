"""Custom domain expectations (Great Expectations 1.x), for both engines CityLake validates on:
pandas (tables up to quality.runner.PANDAS_MAX_ROWS) and Spark (larger ones).

The number checks ARE the quarantine's rules: on Spark they call the very functions standardize
uses (pipelines/standardize.with_ric_checks, pipelines/credit_code.with_uscc_checks), on pandas
their vectorised twins in quality/pandas_rules.py, which a test holds to the same answers on
thousands of values with python-stdnum as the oracle. So a suite and the quarantine never
disagree on what a valid ID number or credit code is:

=====================================================  ==========================================
expect_column_values_to_be_valid_id_number             公民身份号码 valid by GB 11643 (format,
                                                       check character, a real birth date not
                                                       after `as_of`, a division code that existed
                                                       in the birth year); legacy 15-digit numbers
                                                       and full-width digits are normalised first
expect_column_values_to_be_valid_credit_code           统一社会信用代码 valid by GB 32100 (its
                                                       authority/type table, layout, check)
expect_column_values_to_be_city_division_code          行政区划代码 one of the city's divisions
expect_column_values_to_not_be_in_the_future           a date or timestamp not after `as_of`
                                                       (default: today in the session time zone)
expect_column_values_to_be_parseable_date              text a department sent is a date
expect_column_values_to_be_found_in_table              referential: every value of the column is a
                                                       key of another table (`other_table`, e.g.
                                                       gold.population__person, `other_column`)
expect_history_to_be_consistent                        SCD type 2: per key, versions that do not
                                                       overlap, valid_from < valid_to, exactly one
                                                       current row
=====================================================  ==========================================

The number, referential and history checks are table metrics that report the fields of a column
map expectation (element_count of the values judged, unexpected_count, unexpected_percent,
partial_unexpected_list) and take `mostly`. The referential check reads the other table through
`reference_view(other_table)` on Spark and `register_reference` on pandas (the runner registers
the version it reads; tests register small frames).

Importing this module registers the expectations with GX (its registry is keyed by the snake_case
name), so YAML suites name them like any built-in one.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import ClassVar

import pandas as pd
from great_expectations.compatibility import pydantic
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import PandasExecutionEngine, SparkDFExecutionEngine
from great_expectations.expectations.expectation import (
    BatchExpectation,
    ColumnMapExpectation,
    ConditionParser,
    RowConditionType,
)
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider

from quality import pandas_rules as P

PARTIAL_UNEXPECTED = 20  # values kept as examples of a failed table-metric check


# ----------------------------------------------------------------------------- Spark rules


def let(value, body):
    """body(value) with value computed once: a lambda variable, not a copy of its expression.

    A column condition cannot add columns (as standardize does), and the date rules name the
    cleaned value several times; inlined, each copy holds the whole normalisation. Binding it
    through a one-element array keeps the expression small, in classic Spark and Connect alike."""
    from pyspark.sql import functions as F

    return F.transform(F.array(value), body)[0]


def spark_as_timestamp(column):
    """A DATE, a TIMESTAMP or a department's date text as a timestamp (unreadable → null)."""
    from pyspark.sql import functions as F

    from pipelines import standardize as S

    return let(
        S.clean_text(column.cast("string")),
        lambda text: F.coalesce(S.parse_date(text).cast("timestamp"), F.try_to_timestamp(text)),
    )


def spark_not_in_future(column, as_of: str | None):
    from pyspark.sql import functions as F

    limit = F.current_date() if as_of is None else F.lit(as_of).cast("date")
    return let(
        spark_as_timestamp(column),
        lambda value: value.isNull() | (value < F.date_add(limit, 1).cast("timestamp")),
    )


def _as_of(value: str | None) -> dt.date:
    return dt.date.fromisoformat(value) if value else dt.date.today()


def _spark_number_reasons(frame, column: str, kind: str, as_of: str | None):
    """The quarantine's own reason codes of each value of `column` (Spark), as `_reasons`."""
    from pyspark.sql import functions as F

    from pipelines.credit_code import with_uscc_checks
    from pipelines.standardize import division_eras_frame, with_ric_checks

    values = frame.select(F.col(column).cast("string").alias("_value"))
    if kind == "id_number":
        eras = division_eras_frame(frame.sparkSession)
        checked = with_ric_checks(values, "_value", eras, F.lit(_as_of(as_of)))
    else:
        checked = with_uscc_checks(values, "_value")
    reasons = F.array_remove(F.col("_value_reasons"), "_value.missing")
    return checked.select("_value", reasons.alias("_reasons"))


def _spark_counted(checked, bad) -> dict:
    """element_count (non-null values), unexpected_count and examples, from one aggregation."""
    from pyspark.sql import functions as F

    totals = checked.agg(
        F.count("_value").alias("n"), F.count(F.when(bad, 1)).alias("unexpected")
    ).first()
    examples = []
    if totals["unexpected"]:
        rows = checked.where(bad).select("_value").limit(PARTIAL_UNEXPECTED).collect()
        examples = [r[0] for r in rows]
    return {
        "element_count": int(totals["n"]),
        "unexpected_count": int(totals["unexpected"]),
        "partial_unexpected_list": examples,
    }


def _pandas_counted(values: pd.Series, bad: pd.Series) -> dict:
    bad = bad.fillna(False).astype(bool)
    return {
        "element_count": int(values.notna().sum()),
        "unexpected_count": int(bad.sum()),
        "partial_unexpected_list": values[bad].head(PARTIAL_UNEXPECTED).tolist(),
    }


def _domain(execution_engine, metric_domain_kwargs: dict):
    frame, _, _ = execution_engine.get_compute_domain(
        domain_kwargs=metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE
    )
    return frame


# ----------------------------------------------------------------------------- column maps


class ColumnValuesCityDivisionCode(ColumnMapMetricProvider):
    condition_metric_name = "column_values.citylake_city_division_code"
    condition_value_keys = ("division_codes",)

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column, division_codes, **kwargs):
        from pipelines import standardize as S

        return S.clean_text(column.cast("string")).isin(list(division_codes))

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, division_codes, **kwargs):
        return P.clean_text(column).isin(list(division_codes))


class ColumnValuesNotInFuture(ColumnMapMetricProvider):
    condition_metric_name = "column_values.citylake_not_in_future"
    condition_value_keys = ("as_of",)

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column, as_of=None, **kwargs):
        return spark_not_in_future(column, as_of)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, as_of=None, **kwargs):
        return P.not_in_future(column, as_of)


class ColumnValuesParseableDate(ColumnMapMetricProvider):
    condition_metric_name = "column_values.citylake_parseable_date"

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column, **kwargs):
        from pipelines import standardize as S

        return let(
            S.clean_text(column.cast("string")),
            lambda text: text.isNull() | S.parse_date(text).isNotNull(),
        )

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):
        return P.clean_text(column).isna() | P.parse_date(column).notna()


# ----------------------------------------------------------------------------- table metrics


class TableValidIdNumbers(TableMetricProvider):
    """The values of `column` the quarantine would reject as an ID number (as of `as_of`)."""

    metric_name = "table.citylake_valid_id_numbers"
    value_keys = ("column", "as_of")
    kind = "id_number"

    @metric_value(engine=SparkDFExecutionEngine)
    def _spark(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, **kw):
        from pyspark.sql import functions as F

        frame = _domain(execution_engine, metric_domain_kwargs)
        column, as_of = metric_value_kwargs["column"], metric_value_kwargs.get("as_of")
        checked = _spark_number_reasons(frame, column, cls.kind, as_of)
        return _spark_counted(checked, F.size("_reasons") > 0)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, **kw):
        frame = _domain(execution_engine, metric_domain_kwargs)
        values = frame[metric_value_kwargs["column"]]
        if cls.kind == "id_number":
            reasons = P.ric_reasons(values, "_value", _as_of(metric_value_kwargs.get("as_of")))
        else:
            reasons = P.uscc_reasons(values, "_value")
        bad = reasons.map(lambda codes: any(c != "_value.missing" for c in codes))
        return _pandas_counted(values, bad)


class TableValidCreditCodes(TableValidIdNumbers):
    """The values of `column` the quarantine would reject as a credit code."""

    metric_name = "table.citylake_valid_credit_codes"
    value_keys = ("column",)
    kind = "credit_code"


# Reference tables registered for the pandas engine: 'layer.name' → the set of its keys.
_REFERENCES: dict[str, frozenset] = {}


def reference_view(table: str) -> str:
    """The temporary view a referenced table ('layer.name') is registered under (Spark)."""
    return "citylake_ref__" + table.replace(".", "__")


def register_reference(table: str, keys) -> None:
    """The keys a pandas validation compares `other_table` with (an iterable of values)."""
    _REFERENCES[table] = frozenset(k for k in keys if k is not None and not pd.isna(k))


def unregister_reference(table: str) -> None:
    _REFERENCES.pop(table, None)


def _spark_other_table(spark, table: str):
    """The referenced table: its registered view, else its current Delta version in the lake."""
    view = reference_view(table)
    if spark.catalog.tableExists(view):
        return spark.table(view)
    from citylake.config import settings
    from citylake.lake import Lake

    layer, name = table.split(".", 1)
    lake = Lake(settings()[0], spark)
    if not lake.exists(layer, name):
        raise ValueError(
            f"expect_column_values_to_be_found_in_table: table '{table}' does not exist "
            f"({lake.path(layer, name)} is not a Delta table); build it first"
        )
    return lake.read(layer, name)


class TableValuesFoundInTable(TableMetricProvider):
    metric_name = "table.citylake_values_found_in_table"
    value_keys = ("column", "other_table", "other_column")

    @metric_value(engine=SparkDFExecutionEngine)
    def _spark(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, **kw):
        from pyspark.sql import functions as F

        frame = _domain(execution_engine, metric_domain_kwargs)
        column = metric_value_kwargs["column"]
        table, table_column = (
            metric_value_kwargs["other_table"],
            metric_value_kwargs["other_column"],
        )
        keys = (
            _spark_other_table(frame.sparkSession, table)
            .select(F.col(table_column).alias("_ref_key"))
            .where(F.col("_ref_key").isNotNull())
            .distinct()
            .withColumn("_ref_found", F.lit(True))
        )
        values = frame.select(F.col(column).alias("_value")).where(F.col("_value").isNotNull())
        joined = values.join(keys, values["_value"] == keys["_ref_key"], "left")
        return _spark_counted(joined, F.col("_ref_found").isNull())

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, **kw):
        frame = _domain(execution_engine, metric_domain_kwargs)
        table = metric_value_kwargs["other_table"]
        if table not in _REFERENCES:
            raise ValueError(
                f"expect_column_values_to_be_found_in_table: table '{table}' is not registered "
                "for this validation (it does not exist yet: build it first)"
            )
        values = frame[metric_value_kwargs["column"]]
        values = values[values.notna()]
        return _pandas_counted(values, ~values.isin(_REFERENCES[table]))


class TableHistoryConsistent(TableMetricProvider):
    """Keys whose SCD type 2 versions break the rules: overlapping or gapped versions (each
    version must end where the next begins), valid_from not before valid_to, or not exactly one
    current row (the last version, open-ended)."""

    metric_name = "table.citylake_history_consistent"
    value_keys = ("key_columns",)

    @metric_value(engine=SparkDFExecutionEngine)
    def _spark(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, **kw):
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        frame = _domain(execution_engine, metric_domain_kwargs)
        keys = list(metric_value_kwargs["key_columns"])
        order = Window.partitionBy(*keys).orderBy("valid_from", "valid_to")
        last = Window.partitionBy(*keys).orderBy(F.col("valid_from").desc(), "valid_to")
        versions = frame.select(*keys, "valid_from", "valid_to", "is_current").withColumns(
            {
                "_next_from": F.lead("valid_from").over(order),
                "_is_last": F.row_number().over(last) == 1,
            }
        )
        broken = (
            (F.col("valid_to").isNotNull() & (F.col("valid_from") >= F.col("valid_to")))
            | (
                ~F.col("_is_last")
                & ~F.coalesce(F.col("valid_to") == F.col("_next_from"), F.lit(False))
            )
            | (F.col("_is_last") & (F.col("valid_to").isNotNull() | ~F.col("is_current")))
            | (~F.col("_is_last") & F.col("is_current"))
        )
        per_key = versions.groupBy(*keys).agg(F.max(broken.cast("int")).alias("_broken"))
        value = F.to_json(F.struct(*keys)) if len(keys) > 1 else F.col(keys[0]).cast("string")
        checked = per_key.select(value.alias("_value"), "_broken")
        return _spark_counted(checked, F.col("_broken") == 1)

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, **kw):
        frame = _domain(execution_engine, metric_domain_kwargs)
        keys = list(metric_value_kwargs["key_columns"])
        versions = frame[[*keys, "valid_from", "valid_to", "is_current"]].sort_values(
            [*keys, "valid_from", "valid_to"], na_position="last"
        )
        grouped = versions.groupby(keys, sort=False, dropna=False)
        next_from = grouped["valid_from"].shift(-1)
        is_last = grouped.cumcount(ascending=False) == 0
        valid_to = versions["valid_to"]
        broken = (
            (valid_to.notna() & (versions["valid_from"] >= valid_to))
            | (~is_last & ~(valid_to == next_from).fillna(False))
            | (is_last & (valid_to.notna() | ~versions["is_current"].astype(bool)))
            | (~is_last & versions["is_current"].astype(bool))
        )
        per_key = broken.groupby([versions[k] for k in keys], sort=False, dropna=False).max()
        labels = pd.Series(  # as the Spark metric names a key: the value, or JSON of the keys
            [
                str(k)
                if len(keys) == 1
                else json.dumps(dict(zip(keys, k, strict=True)), ensure_ascii=False)
                for k in per_key.index
            ],
            index=per_key.index,
        )
        return _pandas_counted(labels, per_key)


# ----------------------------------------------------------------------------- expectations


class _CountedExpectation(BatchExpectation):
    """A table-metric check reported like a column map expectation, with `mostly` and a
    `row_condition` (the rows it applies to)."""

    mostly: float = pydantic.Field(default=1.0, ge=0.0, le=1.0)
    row_condition: RowConditionType = None
    condition_parser: ConditionParser | None = None
    counted_metric: ClassVar[str]
    domain_keys: ClassVar[tuple[str, ...]] = ("batch_id", "row_condition", "condition_parser")

    def _validate(self, metrics: dict, runtime_configuration=None, execution_engine=None):
        found = metrics[self.counted_metric]
        total, unexpected = found["element_count"], found["unexpected_count"]
        percent = 100.0 * unexpected / total if total else 0.0
        return {
            "success": percent <= 100.0 * (1 - self.mostly) + 1e-9,
            "result": {**found, "unexpected_percent": percent},
        }


class ExpectColumnValuesToBeValidIdNumber(_CountedExpectation):
    """公民身份号码 valid by GB 11643-1999: 18 characters, a real birth date not after `as_of`
    (default today), a division code that existed in the birth year, and the ISO 7064 MOD 11-2
    check character (legacy 15-digit numbers are upgraded first). Empty values are not judged."""

    column: str
    as_of: str | None = pydantic.Field(default=None, regex=r"^\d{4}-\d{2}-\d{2}$")
    counted_metric: ClassVar[str] = "table.citylake_valid_id_numbers"
    metric_dependencies: ClassVar[tuple[str, ...]] = ("table.citylake_valid_id_numbers",)
    success_keys: ClassVar[tuple[str, ...]] = ("column", "as_of", "mostly")
    args_keys: ClassVar[tuple[str, ...]] = ("column",)


class ExpectColumnValuesToBeValidCreditCode(_CountedExpectation):
    """统一社会信用代码 valid by GB 32100-2015: an authority/type pair of its table, the layout and
    the MOD 31-3 check character. Empty values are not judged."""

    column: str
    counted_metric: ClassVar[str] = "table.citylake_valid_credit_codes"
    metric_dependencies: ClassVar[tuple[str, ...]] = ("table.citylake_valid_credit_codes",)
    success_keys: ClassVar[tuple[str, ...]] = ("column", "mostly")
    args_keys: ClassVar[tuple[str, ...]] = ("column",)


class ExpectColumnValuesToBeCityDivisionCode(ColumnMapExpectation):
    """行政区划代码 one of the city's county-level divisions (`$city.division_codes`)."""

    division_codes: list[str] = pydantic.Field(min_items=1)
    map_metric = "column_values.citylake_city_division_code"
    success_keys = ("division_codes", "mostly")


class ExpectColumnValuesToNotBeInTheFuture(ColumnMapExpectation):
    """A date or timestamp not after `as_of` (ISO date; default: today)."""

    as_of: str | None = pydantic.Field(default=None, regex=r"^\d{4}-\d{2}-\d{2}$")
    map_metric = "column_values.citylake_not_in_future"
    success_keys = ("as_of", "mostly")


class ExpectColumnValuesToBeParseableDate(ColumnMapExpectation):
    """Text a department sent is a date in one of the forms the pipeline reads."""

    map_metric = "column_values.citylake_parseable_date"
    success_keys = ("mostly",)


class ExpectColumnValuesToBeFoundInTable(_CountedExpectation):
    """Every non-null value of `column` is an `other_column` key of `other_table` ('layer.name')."""

    column: str
    other_table: str = pydantic.Field(regex=r"^(bronze|silver|gold|quarantine|ops)\.[a-z0-9_]+$")
    other_column: str
    counted_metric: ClassVar[str] = "table.citylake_values_found_in_table"
    metric_dependencies: ClassVar[tuple[str, ...]] = ("table.citylake_values_found_in_table",)
    success_keys: ClassVar[tuple[str, ...]] = ("column", "other_table", "other_column", "mostly")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "other_table", "other_column")


class ExpectHistoryToBeConsistent(_CountedExpectation):
    """SCD type 2 history (valid_from, valid_to, is_current) of each key in `key_columns`:
    versions that neither overlap nor leave gaps, valid_from < valid_to, and exactly one current
    row, the open-ended last version. element_count counts keys."""

    key_columns: list[str] = pydantic.Field(min_items=1)
    counted_metric: ClassVar[str] = "table.citylake_history_consistent"
    metric_dependencies: ClassVar[tuple[str, ...]] = ("table.citylake_history_consistent",)
    success_keys: ClassVar[tuple[str, ...]] = ("key_columns", "mostly")
    args_keys: ClassVar[tuple[str, ...]] = ("key_columns",)


CUSTOM_EXPECTATIONS = (
    ExpectColumnValuesToBeValidIdNumber,
    ExpectColumnValuesToBeValidCreditCode,
    ExpectColumnValuesToBeCityDivisionCode,
    ExpectColumnValuesToNotBeInTheFuture,
    ExpectColumnValuesToBeParseableDate,
    ExpectColumnValuesToBeFoundInTable,
    ExpectHistoryToBeConsistent,
)
