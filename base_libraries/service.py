"""政务服务 Service data: cases (办件), 12345 hotline tickets and 好差评 evaluations.

A case's deadline is its acceptance time plus its statutory days (counted as calendar days: the
extract carries no working-day calendar, so this is the lenient reading); it is overdue when it
finished after the deadline, or is still open past it on the as-of date (end of that day).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from base_libraries.catalog import gold_table
from base_libraries.credit import subject_key
from base_libraries.inputs import BuildInputs
from base_libraries.population import current
from pipelines.standardize import map_codes

CASE = "service__case"
HOTLINE = "service__hotline_ticket"
EVALUATION = "service__evaluation"
FINISHED_STATUSES = ("办结", "不予受理", "退件")


def _hours(start: F.Column, end: F.Column) -> F.Column:
    return F.round((F.unix_timestamp(end) - F.unix_timestamp(start)) / 3600.0, 2)


def _end_of(as_of: dt.date) -> F.Column:
    return F.lit(dt.datetime.combine(as_of, dt.time(23, 59, 59)))


def build_case(inputs: BuildInputs) -> DataFrame:
    now = _end_of(inputs.as_of)
    deadline = F.col("accepted_at") + F.make_dt_interval(F.col("statutory_days").cast("int"))
    return (
        current(inputs.silver["zhengwu__service_cases"])
        .withColumn(
            "applicant_key",
            subject_key(
                F.col("applicant_type"),
                F.col("applicant_credit_code"),
                F.col("applicant_id_number"),
            ),
        )
        .withColumn("deadline_at", deadline)
        .withColumn("is_finished", F.col("finished_at").isNotNull())
        .withColumn(
            "handling_hours", _hours(F.col("accepted_at"), F.coalesce(F.col("finished_at"), now))
        )
        .withColumn("is_overdue", F.coalesce(F.col("finished_at"), now) > F.col("deadline_at"))
        .withColumn("division_name", map_codes(F.col("division_code"), inputs.division_names()))
        .select(*gold_table(CASE).column_names)
    )


def build_hotline_ticket(inputs: BuildInputs) -> DataFrame:
    return (
        current(inputs.silver["rexian__hotline_tickets"])
        .withColumn("handling_hours", _hours(F.col("received_at"), F.col("closed_at")))
        .withColumn("is_closed", F.col("closed_at").isNotNull() | (F.col("status") == "已办结"))
        .withColumn("division_name", map_codes(F.col("division_code"), inputs.division_names()))
        .select(*gold_table(HOTLINE).column_names)
    )


def build_evaluation(inputs: BuildInputs) -> DataFrame:
    cases = inputs.gold[CASE].select(
        "case_number",
        F.lit(True).alias("case_resolved"),
        "department",
        "division_code",
    )
    ratings = ["非常不满意", "不满意", "基本满意", "满意", "非常满意"]
    score_from_rating = F.array_position(F.array(*[F.lit(r) for r in ratings]), F.col("rating"))
    score = F.coalesce(
        F.col("score").cast("int"), F.nullif(score_from_rating, F.lit(0)).cast("int")
    )
    return (
        current(inputs.silver["zhengwu__evaluations"])
        .join(cases, "case_number", "left")
        .withColumn("case_resolved", F.coalesce(F.col("case_resolved"), F.lit(False)))
        .withColumn("score", score)
        .withColumn("is_satisfied", F.col("score") >= 4)
        .select(*gold_table(EVALUATION).column_names)
    )
