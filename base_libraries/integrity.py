"""Cross-library integrity, measured rather than assumed: for each link between base libraries,
how many rows of the referring table resolve to a key of the referred one.

The figures go to ops.integrity (one row per check per run, with the gold versions measured) and
from there to the serving file and the data-health dashboard.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


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


def measure(lake, versions: dict[str, int], as_of: dt.date) -> list[dict]:
    """One row per link of ops.integrity, measured with DuckDB on the given gold versions; links
    whose table does not exist yet are skipped."""
    from pipelines import ops

    measured_at = ops.now()
    rows = []
    for link in LINKS:
        if link.table not in versions:
            continue
        relation = lake.scan("gold", link.table, versions[link.table])
        where = f"WHERE {link.applies}" if link.applies else ""
        ((resolved, total),) = lake.query(
            f"SELECT coalesce(sum(CAST(({link.flag}) AS BIGINT)), 0), count(*) FROM {relation} {where}"
        )
        rows.append(
            {
                "as_of": as_of,
                "measured_at": measured_at,
                "check": link.check,
                "title": link.title,
                "table_name": link.table,
                "table_version": versions[link.table],
                "resolved": int(resolved),
                "total": int(total),
                "share": round(resolved / total, 6) if total else None,
            }
        )
    return rows
