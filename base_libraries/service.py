"""政务服务 Service data: cases (办件), 12345 hotline tickets and 好差评 evaluations.

A case's deadline is the end of the n-th 法定工作日 after the day it was accepted, n its statutory
days (citylake.workdays: China's holidays and make-up working days); it is overdue when it
finished after the deadline, or is still open past it on the as-of date (end of that day).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from base_libraries.credit import subject_key
from base_libraries.inputs import BuildInputs
from base_libraries.population import current
from citylake import workdays
from citylake.catalogue import gold_table
from pipelines.standardize import map_codes

CASE = "service__case"
HOTLINE = "service__hotline_ticket"
EVALUATION = "service__evaluation"
FINISHED_STATUSES = ("办结", "不予受理", "退件")


def _hours(start: F.Column, end: F.Column) -> F.Column:
    return F.round((F.unix_timestamp(end) - F.unix_timestamp(start)) / 3600.0, 2)


def _end_of(as_of: dt.date) -> F.Column:
    """23:59:59 of as_of on the city's clock (the session time zone), whatever this machine's."""
    return F.to_timestamp(F.lit(f"{as_of.isoformat()} 23:59:59"))


# The working-day calendar reaches from the first year chinese-calendar knows to a year past the
# as-of date (no statutory limit is longer); a case accepted earlier gets no deadline.
CALENDAR_FROM = dt.date(2004, 1, 1)
CALENDAR_AHEAD = dt.timedelta(days=366)


def with_workday_deadline(frame: DataFrame, start: str, days: str, as_of: dt.date) -> DataFrame:
    """frame + deadline_at: the end (23:59:59) of the `days`-th working day after the day of
    `start`. Two broadcast joins with the calendar's working-day ordinals, no UDF."""
    rows = workdays.calendar(CALENDAR_FROM, as_of + CALENDAR_AHEAD)
    spark = frame.sparkSession
    cal = spark.createDataFrame(rows, "day date, is_workday boolean, ordinal int")
    starts = F.broadcast(cal.select(F.col("day").alias("_start_day"), F.col("ordinal").alias("_o")))
    ends = F.broadcast(
        cal.where("is_workday").select(F.col("day").alias("_end_day"), F.col("ordinal").alias("_e"))
    )
    n = F.col(days).cast("int")
    joined = frame.join(starts, F.to_date(F.col(start)) == F.col("_start_day"), "left").join(
        ends, (F.col("_o") + n == F.col("_e")) & (n > 0), "left"
    )
    day = F.when(n == 0, F.col("_start_day")).otherwise(F.col("_end_day"))
    end_of_day = F.to_timestamp(F.concat(day.cast("string"), F.lit(" 23:59:59")))
    return joined.withColumn("deadline_at", end_of_day).drop("_start_day", "_o", "_end_day", "_e")


def build_case(inputs: BuildInputs) -> DataFrame:
    now = _end_of(inputs.as_of)
    cases = current(inputs.silver["zhengwu__service_cases"])
    return (
        with_workday_deadline(cases, "accepted_at", "statutory_days", inputs.as_of)
        .withColumn(
            "applicant_key",
            subject_key(
                F.col("applicant_type"),
                F.col("applicant_credit_code"),
                F.col("applicant_id_number"),
            ),
        )
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
