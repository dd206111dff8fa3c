"""Cross-library integrity, measured rather than assumed: for each link between base libraries,
how many rows of the referring table resolve to a key of the referred one.

The figures go to ops.integrity (one row per check per run, with the gold versions measured) and
from there to the serving file and the data-health dashboard.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


@dataclass(frozen=True)
class Link:
    check: str
    title: str  # 中文 (English)
    table: str  # gold table holding the flag
    flag: str  # boolean column: the key resolves
    applies: str | None = None  # SQL condition: rows the check is about (default all)


LINKS = (
    Link(
        "licence_holder",
        "证照持证主体可关联 (licence holders found in the entity or population library)",
        "licence__licence",
        "holder_resolved",
        "holder_key IS NOT NULL",
    ),
    Link(
        "credit_subject",
        "信用记录主体可关联 (credit record subjects found in the entity or population library)",
        "credit__record",
        "subject_resolved",
        "subject_key IS NOT NULL",
    ),
    Link(
        "entity_representative",
        "法定代表人可关联人口库 (legal representatives found in the population library)",
        "legal_entity__entity",
        "legal_representative_resolved",
        "legal_representative_id_number IS NOT NULL",
    ),
    Link(
        "evaluation_case",
        "好差评可关联办件 (evaluations whose case is known)",
        "service__evaluation",
        "case_resolved",
    ),
    Link(
        "building_parcel",
        "房屋可关联宗地 (buildings whose parcel is known)",
        "spatial__building",
        "parcel_resolved",
    ),
    Link(
        "parcel_division",
        "宗地申报区划与空间落位一致 (parcels whose declared division matches their location)",
        "spatial__parcel",
        "NOT division_mismatch",
    ),
)

SCHEMA = (
    "as_of date, measured_at timestamp, check string, title string, table_name string, "
    "table_version long, resolved long, total long, share double"
)


def measure(read_gold, versions: dict[str, int], as_of: dt.date) -> list[tuple]:
    """One row per link: (as_of, measured_at, check, title, table, version, resolved, total, share).

    read_gold(name) returns the gold frame; links whose table does not exist yet are skipped.
    """
    measured_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = []
    for link in LINKS:
        if link.table not in versions:
            continue
        frame: DataFrame = read_gold(link.table)
        if link.applies:
            frame = frame.where(link.applies)
        resolved, total = frame.agg(
            F.sum(F.expr(link.flag).cast("long")), F.count(F.lit(1))
        ).first()
        resolved = int(resolved or 0)
        share = round(resolved / total, 6) if total else None
        rows.append(
            (
                as_of,
                measured_at,
                link.check,
                link.title,
                link.table,
                versions[link.table],
                resolved,
                int(total),
                share,
            )
        )
    return rows
