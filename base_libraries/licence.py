"""电子证照库 Licence base library: gold.licence__licence, one row per licence, its holder resolved
to a legal entity or a person, and its status computed as of the run's logical date:
  已注销  the department reports it revoked or cancelled (注销, 吊销, 撤销);
  已过期  valid_until before the as-of date;
  即将到期 valid_until within the next 30 days (inclusive);
  有效    otherwise (an empty valid_until means valid indefinitely, 长期).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from base_libraries.credit import resolve, subject_key
from base_libraries.inputs import BuildInputs
from base_libraries.population import current
from citylake.catalogue import gold_table
from pipelines.standardize import map_codes

LICENCE = "licence__licence"
EXPIRING_WITHIN_DAYS = 30
WITHDRAWN_STATUSES = ("注销", "吊销", "撤销")


def build_licence(inputs: BuildInputs) -> DataFrame:
    as_of = F.lit(inputs.as_of)
    days = F.datediff(F.col("valid_until"), as_of)
    licences = current(inputs.silver["shenpi__licences"]).withColumn(
        "holder_key",
        subject_key(F.col("holder_type"), F.col("holder_credit_code"), F.col("holder_id_number")),
    )
    return (
        resolve(licences, "holder_key", "holder_resolved", inputs)
        .withColumnRenamed("status", "reported_status")
        .withColumn("days_to_expiry", days)
        .withColumn(
            "status",
            F.when(F.col("reported_status").isin(*WITHDRAWN_STATUSES), "已注销")
            .when(days < 0, "已过期")
            .when(days <= EXPIRING_WITHIN_DAYS, "即将到期")
            .otherwise("有效"),
        )
        .withColumn("division_name", map_codes(F.col("division_code"), inputs.division_names()))
        .select(*gold_table(LICENCE).column_names)
    )
