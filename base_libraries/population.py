"""人口库 Population base library (grains and columns in base_libraries/population__*.yml).

gold.population__person: the household register's current rows (公安 is the authority on who a
person is, where they are registered and in which household), plus newborns known only from
their birth registration, with the death and marriage registers applied on top.

Precedence when departments disagree (documented in README, tested):
- identity facts (name, sex, birth date, household, residence) come from the household register;
  a birth registration adds a person only when the register does not know the ID number yet;
- a death registration only sets is_alive/death_date; a marriage registration only sets
  marital_status/spouse; neither overwrites identity facts;
- sex and birth date are taken from the ID number itself (GB 11643), which every register shares.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from base_libraries.inputs import BuildInputs
from citylake.catalogue import LINEAGE, gold_table
from pipelines.standardize import map_codes

PERSON = "population__person"
HOUSEHOLD = "population__household"


def current(frame: DataFrame) -> DataFrame:
    """The current rows of a silver table (SCD type 2 tables keep history beside them)."""
    return frame.where(F.col("is_current")) if "is_current" in frame.columns else frame


def _age(birth: F.Column, inputs: BuildInputs) -> F.Column:
    return F.floor(F.months_between(F.lit(inputs.as_of), birth) / 12).cast("int")


def _latest(frame: DataFrame, key: str, order: str) -> DataFrame:
    """One row per key: the one with the latest `order`, then the latest delivered (delivery
    date, batch, row): never the time of ingestion, so a replay or a backfill picks the same."""
    window = Window.partitionBy(key).orderBy(
        F.col(order).desc_nulls_last(),
        F.col("_delivery_date").desc(),
        F.col("_batch_id").desc(),
        F.col("_row_number").desc(),
    )
    return frame.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").drop("_rank")


def build_person(inputs: BuildInputs) -> DataFrame:
    divisions = inputs.division_names()
    register = current(inputs.silver["person"]).select(
        "id_number",
        "name",
        F.col("id_number_sex").alias("sex"),
        F.col("id_number_birth_date").alias("birth_date"),
        "ethnicity",
        "household_id",
        "relation_to_head",
        "division_code",
        F.col("id_number_division").alias("id_division"),
        "address",
        "phone",
        "registered_date",
        F.lit("户籍").alias("record_source"),
        *LINEAGE,
    )
    births = (
        current(inputs.silver["weijian__births"])
        .where(F.col("child_id_number").isNotNull())
        .select(
            F.col("child_id_number").alias("id_number"),
            F.col("child_name").alias("name"),
            F.col("child_id_number_sex").alias("sex"),
            F.col("child_id_number_birth_date").alias("birth_date"),
            F.lit(None).cast("string").alias("ethnicity"),
            F.lit(None).cast("string").alias("household_id"),
            F.lit(None).cast("string").alias("relation_to_head"),
            "division_code",
            F.col("child_id_number_division").alias("id_division"),
            "address",
            F.lit(None).cast("string").alias("phone"),
            F.col("issued_date").alias("registered_date"),
            F.lit("出生登记").alias("record_source"),
            *LINEAGE,
            "_delivery_date",
            "_row_number",
        )
    )
    births = _latest(births, "id_number", "registered_date").drop("_delivery_date", "_row_number")
    people = register.unionByName(
        births.join(register.select("id_number"), "id_number", "left_anti")
    )

    deaths = _latest(current(inputs.silver["weijian__deaths"]), "id_number", "death_date").select(
        "id_number", "death_date"
    )
    marriages = current(inputs.silver["minzheng__marriages"])
    sides = [("husband_id_number", "wife_id_number"), ("wife_id_number", "husband_id_number")]
    spouses = None
    for own, other in sides:
        side = marriages.select(
            F.col(own).alias("id_number"),
            F.col(other).alias("spouse_id_number"),
            "registration_type",
            "registration_date",
            "_delivery_date",
            "_batch_id",
            "_row_number",
        )
        spouses = side if spouses is None else spouses.unionByName(side)
    latest_marriage = _latest(spouses, "id_number", "registration_date").select(
        "id_number",
        F.when(F.col("registration_type") == "离婚", "离婚")
        .otherwise("已婚")
        .alias("marital_status"),
        F.when(F.col("registration_type") != "离婚", F.col("spouse_id_number")).alias(
            "spouse_id_number"
        ),
    )
    person = (
        people.join(deaths, "id_number", "left")
        .join(latest_marriage, "id_number", "left")
        .select(
            "id_number",
            "name",
            "sex",
            "birth_date",
            _age(F.col("birth_date"), inputs).alias("age"),
            "ethnicity",
            "household_id",
            "relation_to_head",
            "division_code",
            map_codes(F.col("division_code"), divisions).alias("division_name"),
            map_codes(F.col("id_division"), inputs.city.code_to_current).alias(
                "birth_division_code"
            ),
            "address",
            "phone",
            "registered_date",
            F.col("death_date").isNull().alias("is_alive"),
            "death_date",
            F.coalesce(F.col("marital_status"), F.lit("未登记")).alias("marital_status"),
            "spouse_id_number",
            "record_source",
            *LINEAGE,
        )
    )
    return person.select(*gold_table(PERSON).column_names)


def build_household(inputs: BuildInputs) -> DataFrame:
    person = inputs.gold[PERSON].where(
        F.col("household_id").isNotNull() & (F.col("record_source") == "户籍")
    )
    is_head = (F.col("relation_to_head") == "户主").cast("int")
    # The head's row speaks for the household (a household without a registered head: its
    # earliest-registered member), lineage included.
    earlier = F.coalesce(F.datediff(F.lit("2999-12-31"), F.col("registered_date")), F.lit(0))
    rank = F.struct(is_head, earlier, F.col("id_number"))
    head = F.max_by(
        F.struct("id_number", "name", "division_code", "division_name", "address", *LINEAGE),
        rank,
    )
    return (
        person.groupBy("household_id")
        .agg(
            head.alias("head"),
            F.sum(F.col("is_alive").cast("int")).alias("members"),
            F.sum((~F.col("is_alive")).cast("int")).alias("deceased_members"),
        )
        .select(
            "household_id",
            F.col("head.id_number").alias("head_id_number"),
            F.col("head.name").alias("head_name"),
            "head.division_code",
            "head.division_name",
            "head.address",
            F.col("members").cast("int"),
            F.col("deceased_members").cast("int"),
            *[F.col(f"head.{c}").alias(c) for c in LINEAGE],
        )
        .select(*gold_table(HOUSEHOLD).column_names)
    )
