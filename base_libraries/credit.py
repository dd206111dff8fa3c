"""信用库 Credit base library.

gold.credit__record: every credit record with its subject resolved to a legal entity or a person.
gold.credit__entity_profile: each legal entity's standing on the as-of date. The rating rule:
  D  on a black list (黑名单) not removed;
  C  otherwise, with at least one current negative record (行政处罚, 司法判决 / 被执行人);
  A  otherwise, on a red list (红名单) not removed;
  B  everyone else.
A watch list (重点关注名单) entry is shown but does not change the rating.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from base_libraries.inputs import BuildInputs
from base_libraries.legal_entity import ENTITY
from base_libraries.population import PERSON, current
from citylake.catalogue import LINEAGE, gold_table
from pipelines.standardize import map_codes

RECORD = "credit__record"
PROFILE = "credit__entity_profile"
NEGATIVE_RECORD_TYPES = ("行政处罚", "司法判决")


def _known_keys(inputs: BuildInputs) -> DataFrame:
    entities = inputs.gold[ENTITY].select(F.col("credit_code").alias("key"))
    people = inputs.gold[PERSON].select(F.col("id_number").alias("key"))
    return entities.unionByName(people).distinct().withColumn("resolved", F.lit(True))


def subject_key(kind: F.Column, credit_code: F.Column, id_number: F.Column) -> F.Column:
    """The subject's key: a person's ID number, otherwise the credit code."""
    return F.when(kind == "自然人", id_number).otherwise(F.coalesce(credit_code, id_number))


def resolve(frame: DataFrame, key: str, flag: str, inputs: BuildInputs) -> DataFrame:
    known = _known_keys(inputs).withColumnRenamed("key", key).withColumnRenamed("resolved", flag)
    joined = frame.join(known, key, "left")
    return joined.withColumn(flag, F.coalesce(F.col(flag), F.lit(False)))


def build_record(inputs: BuildInputs) -> DataFrame:
    records = current(inputs.silver["xinyong__credit_records"]).withColumn(
        "subject_key", subject_key(F.col("subject_type"), F.col("credit_code"), F.col("id_number"))
    )
    as_of = F.lit(inputs.as_of)
    return (
        resolve(records, "subject_key", "subject_resolved", inputs)
        .withColumn("is_current", F.col("valid_until").isNull() | (F.col("valid_until") >= as_of))
        .withColumn("division_name", map_codes(F.col("division_code"), inputs.division_names()))
        .select(*gold_table(RECORD).column_names)
    )


def build_entity_profile(inputs: BuildInputs) -> DataFrame:
    as_of = F.lit(inputs.as_of)
    listed = (
        current(inputs.silver["xinyong__red_black_list"])
        .where(F.col("credit_code").isNotNull())
        .where(F.col("listed_date") <= as_of)
        .where(F.col("removal_date").isNull() | (F.col("removal_date") > as_of))
        .groupBy("credit_code")
        .agg(
            F.max((F.col("list_type") == "红名单").cast("int")).cast("boolean").alias("red"),
            F.max((F.col("list_type") == "黑名单").cast("int")).cast("boolean").alias("black"),
            F.max((F.col("list_type") == "重点关注名单").cast("int"))
            .cast("boolean")
            .alias("watch"),
        )
    )
    records = (
        inputs.gold[RECORD]
        .where(F.col("is_current") & F.col("subject_key").isNotNull())
        .groupBy(F.col("subject_key").alias("credit_code"))
        .agg(
            F.count("*").cast("int").alias("current_records"),
            F.sum(F.col("record_type").isin(*NEGATIVE_RECORD_TYPES).cast("int"))
            .cast("int")
            .alias("negative_records"),
        )
    )
    red = F.coalesce(F.col("red"), F.lit(False))
    black = F.coalesce(F.col("black"), F.lit(False))
    negatives = F.coalesce(F.col("negative_records"), F.lit(0))
    return (
        inputs.gold[ENTITY]
        .select("credit_code", "entity_name", "division_code", "division_name", *LINEAGE)
        .join(listed, "credit_code", "left")
        .join(records, "credit_code", "left")
        .select(
            "credit_code",
            "entity_name",
            "division_code",
            "division_name",
            red.alias("on_red_list"),
            black.alias("on_black_list"),
            F.coalesce(F.col("watch"), F.lit(False)).alias("on_watch_list"),
            F.coalesce(F.col("current_records"), F.lit(0)).alias("current_records"),
            negatives.alias("negative_records"),
            F.when(black, "D")
            .when(negatives > 0, "C")
            .when(red, "A")
            .otherwise("B")
            .alias("rating"),
            *LINEAGE,
        )
        .select(*gold_table(PROFILE).column_names)
    )
