"""法人库 Legal entity base library: market entities (市场主体, the business registry) and social
organisations (社会组织, civil affairs), one row per 统一社会信用代码.

Precedence: a credit code found in both registers is the business registry's (市场监管 registers
market entities; an organisation listed by both is reported by the integrity figures, not merged).
The legal representative is linked to gold.population__person when the ID number resolves.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from base_libraries.inputs import BuildInputs
from base_libraries.population import PERSON, current
from citylake.catalogue import LINEAGE, gold_table
from pipelines.standardize import map_codes

ENTITY = "legal_entity__entity"
# GB 32100-2015 登记管理部门码, the code's first character.
AUTHORITY_KINDS = {
    "1": "机构编制",
    "2": "外交",
    "3": "司法行政",
    "4": "文化",
    "5": "民政",
    "6": "旅游",
    "7": "宗教",
    "8": "工会",
    "9": "市场监管",
    "A": "中央军委改革和编制办公室",
    "N": "农业",
    "Y": "其他",
}
INACTIVE_STATUSES = ("吊销", "注销", "撤销", "迁出")


def build_entity(inputs: BuildInputs) -> DataFrame:
    market = current(inputs.silver["shichang__business_registry"]).select(
        "credit_code",
        "entity_name",
        F.lit("市场主体").alias("entity_category"),
        "entity_type",
        "legal_representative",
        "legal_representative_id_number",
        "registered_capital",
        F.col("established_date"),
        "division_code",
        "address",
        "status",
        "phone",
        *LINEAGE,
    )
    organisations = current(inputs.silver["minzheng__social_organisations"]).select(
        "credit_code",
        F.col("organisation_name").alias("entity_name"),
        F.lit("社会组织").alias("entity_category"),
        F.col("organisation_type").alias("entity_type"),
        "legal_representative",
        "legal_representative_id_number",
        "registered_capital",
        F.col("registration_date").alias("established_date"),
        "division_code",
        "address",
        "status",
        F.lit(None).cast("string").alias("phone"),
        *LINEAGE,
    )
    entities = market.unionByName(
        organisations.join(market.select("credit_code"), "credit_code", "left_anti")
    )
    people = inputs.gold[PERSON].select(
        F.col("id_number").alias("legal_representative_id_number"),
        F.lit(True).alias("legal_representative_resolved"),
    )
    return (
        entities.join(people, "legal_representative_id_number", "left")
        .withColumn(
            "legal_representative_resolved",
            F.coalesce(F.col("legal_representative_resolved"), F.lit(False)),
        )
        .withColumn(
            "registration_authority_kind",
            map_codes(F.substring("credit_code", 1, 1), AUTHORITY_KINDS),
        )
        .withColumn("division_name", map_codes(F.col("division_code"), inputs.division_names()))
        .withColumn(
            "is_active",
            F.col("status").isNotNull() & ~F.col("status").isin(*INACTIVE_STATUSES),
        )
        .select(*gold_table(ENTITY).column_names)
    )
