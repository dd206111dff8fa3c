"""Custom domain expectations (Great Expectations 1.x) for Spark frames.

Each rule is the same native Spark expression the standardization uses (pipelines/standardize.py,
pipelines/credit_code.py), so a suite and the quarantine can never disagree on what a valid ID
number or credit code is, and nothing runs row by row in Python:

=====================================================  ==========================================
expect_column_values_to_be_valid_id_number             公民身份号码 valid by GB 11643 (format,
                                                       check character, real birth date not in
                                                       the future); legacy 15-digit numbers and
                                                       full-width digits are normalised first
expect_column_values_to_be_valid_credit_code           统一社会信用代码 valid by GB 32100
expect_column_values_to_be_city_division_code          行政区划代码 one of the city's divisions
expect_column_values_to_not_be_in_the_future           a date or timestamp not after `as_of`
                                                       (default: today in the session time zone)
expect_column_values_to_be_parseable_date              text a department sent is a date
expect_column_values_to_be_found_in_table              referential: every value of the column is a
                                                       key of another table (`other_table`, e.g.
                                                       gold.population__person, `other_column`)
=====================================================  ==========================================

The map expectations take `mostly` and report unexpected counts and values like any GX column map
expectation. The referential check joins the batch with the other table — the temporary view
`reference_view(other_table)` when one is registered (the runner registers the version it reads;
tests register small frames), else the table's current Delta version in the lake; it reports the
same result fields (element_count counts non-null values).

Importing this module registers the expectations with GX (its registry is keyed by the snake_case
name), so YAML suites name them like any built-in one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from great_expectations.compatibility import pydantic
from great_expectations.core.metric_domain_types import MetricDomainTypes
from great_expectations.execution_engine import SparkDFExecutionEngine
from great_expectations.expectations.expectation import BatchExpectation, ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from great_expectations.expectations.metrics.metric_provider import metric_value
from great_expectations.expectations.metrics.table_metric_provider import TableMetricProvider
from pyspark.sql import Column
from pyspark.sql import functions as F

from pipelines import standardize as S
from pipelines.credit_code import USCC_PATTERN, clean_credit_code, uscc_check_character

PARTIAL_UNEXPECTED = 20  # values kept as examples of a failed referential check


# ----------------------------------------------------------------------------- rules as Columns


def let(value: Column, body) -> Column:
    """body(value) with value computed once: a lambda variable, not a copy of its expression.

    A column condition cannot add columns (as standardize does), and the number rules name the
    normalised value some twenty times; inlined, each copy holds the whole normalisation and the
    plan grows past what the optimizer can handle. Binding it through a one-element array keeps
    the expression small and runs the same in classic Spark and through Spark Connect."""
    return F.transform(F.array(value), body)[0]


def _ric_valid(number: Column) -> Column:
    birth = F.try_to_date(F.substring(number, 7, 8), "yyyyMMdd")
    return (
        number.rlike(S.RIC_PATTERN)
        & (F.substring(number, 18, 1) == S.ric_check_character(F.substring(number, 1, 17)))
        & birth.isNotNull()
        & (F.year(birth) >= 1890)
        & (birth <= F.current_date())
    )


def valid_id_number(column: Column) -> Column:
    """True when the value is a GB 11643 number after the standard normalisation; a value that is
    empty once normalised is not judged (true): missing values are a not-null expectation's job."""
    return let(
        S.clean_id_number(column.cast("string")),
        lambda cleaned: let(
            S.upgrade_ric15(cleaned),
            lambda number: number.isNull() | F.coalesce(_ric_valid(number), F.lit(False)),
        ),
    )


def valid_credit_code(column: Column) -> Column:
    """True when the value is a GB 32100 code after the standard normalisation (empty: true)."""

    def valid(code: Column) -> Column:
        ok = code.rlike(USCC_PATTERN) & (
            F.substring(code, 18, 1) == uscc_check_character(F.substring(code, 1, 17))
        )
        return code.isNull() | F.coalesce(ok, F.lit(False))

    return let(clean_credit_code(column.cast("string")), valid)


def as_timestamp(column: Column) -> Column:
    """A DATE, a TIMESTAMP or a department's date text as a timestamp (unreadable → null)."""
    return let(
        S.clean_text(column.cast("string")),
        lambda text: F.coalesce(S.parse_date(text).cast("timestamp"), F.try_to_timestamp(text)),
    )


def not_in_future(column: Column, as_of: str | None) -> Column:
    limit = F.current_date() if as_of is None else F.lit(as_of).cast("date")
    return let(
        as_timestamp(column),
        lambda value: value.isNull() | (value < F.date_add(limit, 1).cast("timestamp")),
    )


# ----------------------------------------------------------------------------- metrics


class ColumnValuesValidIdNumber(ColumnMapMetricProvider):
    condition_metric_name = "column_values.citylake_valid_id_number"

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column, **kwargs):
        return valid_id_number(column)


class ColumnValuesValidCreditCode(ColumnMapMetricProvider):
    condition_metric_name = "column_values.citylake_valid_credit_code"

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column, **kwargs):
        return valid_credit_code(column)


class ColumnValuesCityDivisionCode(ColumnMapMetricProvider):
    condition_metric_name = "column_values.citylake_city_division_code"
    condition_value_keys = ("division_codes",)

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column, division_codes, **kwargs):
        return S.clean_text(column.cast("string")).isin(list(division_codes))


class ColumnValuesNotInFuture(ColumnMapMetricProvider):
    condition_metric_name = "column_values.citylake_not_in_future"
    condition_value_keys = ("as_of",)

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column, as_of=None, **kwargs):
        return not_in_future(column, as_of)


class ColumnValuesParseableDate(ColumnMapMetricProvider):
    condition_metric_name = "column_values.citylake_parseable_date"

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column, **kwargs):
        return let(
            S.clean_text(column.cast("string")),
            lambda text: text.isNull() | S.parse_date(text).isNotNull(),
        )


def reference_view(table: str) -> str:
    """The temporary view a referenced table ('layer.name') is registered under."""
    return "citylake_ref__" + table.replace(".", "__")


def _other_table(spark, table: str):
    """The referenced table: its registered view, else its current Delta version in the lake."""
    view = reference_view(table)
    if spark.catalog.tableExists(view):
        return spark.table(view)
    from citylake.config import settings

    layer, name = table.split(".", 1)
    path = settings()[0].table_path(layer, name)
    if not (path / "_delta_log").is_dir():
        raise ValueError(
            f"expect_column_values_to_be_found_in_table: table '{table}' does not exist "
            f"({path} is not a Delta table); build it first"
        )
    return spark.read.format("delta").load(str(path))


class TableValuesFoundInTable(TableMetricProvider):
    metric_name = "table.citylake_values_found_in_table"
    value_keys = ("column", "other_table", "other_column")

    @metric_value(engine=SparkDFExecutionEngine)
    def _spark(
        cls,
        execution_engine: SparkDFExecutionEngine,
        metric_domain_kwargs: dict,
        metric_value_kwargs: dict,
        metrics: dict[str, Any],
        runtime_configuration: dict,
    ) -> dict:
        frame, _, _ = execution_engine.get_compute_domain(
            domain_kwargs=metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE
        )
        column = metric_value_kwargs["column"]
        table, table_column = (
            metric_value_kwargs["other_table"],
            metric_value_kwargs["other_column"],
        )
        keys = (
            _other_table(frame.sparkSession, table)
            .select(F.col(table_column).alias("_ref_key"))
            .where(F.col("_ref_key").isNotNull())
            .distinct()
            .withColumn("_ref_found", F.lit(True))
        )
        values = frame.select(F.col(column).alias("_value")).where(F.col("_value").isNotNull())
        joined = values.join(keys, values["_value"] == keys["_ref_key"], "left")
        totals = joined.agg(
            F.count(F.lit(1)).alias("n"),
            F.count(F.when(F.col("_ref_found").isNull(), 1)).alias("unexpected"),
        ).first()
        examples = []
        if totals["unexpected"]:
            rows = (
                joined.where(F.col("_ref_found").isNull())
                .select("_value")
                .limit(PARTIAL_UNEXPECTED)
                .collect()
            )
            examples = [r[0] for r in rows]
        return {
            "element_count": int(totals["n"]),
            "unexpected_count": int(totals["unexpected"]),
            "partial_unexpected_list": examples,
        }


# ----------------------------------------------------------------------------- expectations


class ExpectColumnValuesToBeValidIdNumber(ColumnMapExpectation):
    """公民身份号码 valid by GB 11643-1999: 18 characters, real birth date not in the future, and
    the ISO 7064 MOD 11-2 check character (legacy 15-digit numbers are upgraded first)."""

    map_metric = "column_values.citylake_valid_id_number"
    success_keys = ("mostly",)


class ExpectColumnValuesToBeValidCreditCode(ColumnMapExpectation):
    """统一社会信用代码 valid by GB 32100-2015: alphabet, layout and MOD 31-3 check character."""

    map_metric = "column_values.citylake_valid_credit_code"
    success_keys = ("mostly",)


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


class ExpectColumnValuesToBeFoundInTable(BatchExpectation):
    """Every non-null value of `column` is an `other_column` key of `other_table` ('layer.name')."""

    column: str
    other_table: str = pydantic.Field(regex=r"^(bronze|silver|gold|quarantine|ops)\.[a-z0-9_]+$")
    other_column: str
    mostly: float = pydantic.Field(default=1.0, ge=0.0, le=1.0)

    metric_dependencies: ClassVar[tuple[str, ...]] = ("table.citylake_values_found_in_table",)
    success_keys: ClassVar[tuple[str, ...]] = ("column", "other_table", "other_column", "mostly")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "other_table", "other_column")

    def _validate(self, metrics: dict, runtime_configuration=None, execution_engine=None):
        found = metrics["table.citylake_values_found_in_table"]
        total, unexpected = found["element_count"], found["unexpected_count"]
        percent = 100.0 * unexpected / total if total else 0.0
        return {
            "success": percent <= 100.0 * (1 - self.mostly) + 1e-9,
            "result": {**found, "unexpected_percent": percent},
        }


CUSTOM_EXPECTATIONS = (
    ExpectColumnValuesToBeValidIdNumber,
    ExpectColumnValuesToBeValidCreditCode,
    ExpectColumnValuesToBeCityDivisionCode,
    ExpectColumnValuesToNotBeInTheFuture,
    ExpectColumnValuesToBeParseableDate,
    ExpectColumnValuesToBeFoundInTable,
)
