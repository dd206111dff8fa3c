"""Masking personal data: one rule per kind, written once in SQL and run by DuckDB everywhere.

The serving file masks inside the SELECT that copies gold (`sql`), so no clear value is ever
written to it; the quality reports, delivery reports and quarantine lists mask the values they
show with the same expressions (`mask_values` runs them over a list in one DuckDB query), so a
person's ID number, name, phone or address looks the same wherever it appears:

    id_number  451102199001011234 → 4511**********1234 (legacy 15 digits keep 4 + 4 as well)
    name       张三 → 张*, 欧阳修 → 欧**
    phone      13812345678 → 138****5678; 0774-5123456 → 077*****3456
    address    八步区贺街镇城中路6号 → 八步区贺街镇 (cut after the township or street, else the
               county; *** when neither is named)
    text       anything else personal (a malformed line, a date derived from an ID number) or
               shaped like an ID or mobile number: the ends kept by length, the middle starred
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable

RULES = {
    "id_number": "CASE WHEN {c} IS NULL THEN NULL"
    " ELSE left({c}, 4) || repeat('*', greatest(length({c}) - 8, 0)) || right({c}, 4) END",
    "name": "CASE WHEN {c} IS NULL OR {c} = '' THEN {c}"
    " ELSE left({c}, 1) || repeat('*', greatest(length({c}) - 1, 1)) END",
    "phone": "CASE WHEN {c} IS NULL OR length({c}) < 8 THEN {c}"
    " ELSE left({c}, 3) || repeat('*', length({c}) - 7) || right({c}, 4) END",
    "address": "CASE WHEN {c} IS NULL THEN NULL ELSE coalesce("
    "nullif(regexp_extract({c}, '^.*?(镇|乡|街道|街道办事处)', 0), ''),"
    " nullif(regexp_extract({c}, '^.*?(区|县|市)', 0), ''), '***') END",
    "text": "CASE WHEN {c} IS NULL THEN NULL"
    " WHEN length({c}) >= 15 THEN left({c}, 4) || repeat('*', length({c}) - 8) || right({c}, 4)"
    " WHEN length({c}) >= 11 THEN left({c}, 3) || repeat('*', length({c}) - 7) || right({c}, 4)"
    " WHEN length({c}) >= 2 THEN left({c}, 1) || repeat('*', length({c}) - 1)"
    " ELSE '*' END",
}
# Kinds whose serving copy also gets a keyed hash (<column>_key), so analysts can still join and
# count distinct persons without seeing the number.
KEYED = frozenset({"id_number"})
# A value shaped like an ID number or a mobile number is personal whatever its column says.
PERSONAL_VALUE = re.compile(r"\d{15}|\d{17}[\dXx]|1[3-9]\d{9}")


def sql(kind: str, column: str) -> str:
    """The DuckDB expression that masks `column` (SQL text, e.g. '"name"') of this kind."""
    return RULES[kind].format(c=column)


_local = threading.local()


def _connection():
    import duckdb

    if getattr(_local, "con", None) is None:
        _local.con = duckdb.connect()
    return _local.con


@functools.lru_cache(maxsize=4096)
def _one(kind: str, value: str) -> str:
    return mask_values([value], kind)[0]


def mask_values(values: Iterable[str | None], kind: str = "text") -> list[str | None]:
    """The values masked by the rule of `kind`, in order (one DuckDB query for the whole list)."""
    values = [None if v is None else str(v) for v in values]
    if not values:
        return []
    rows = (
        _connection()
        .execute(
            f"SELECT {sql(kind, 'v')} FROM unnest(?::VARCHAR[]) WITH ORDINALITY AS t(v, i)"
            " ORDER BY i",
            [values],
        )
        .fetchall()
    )
    return [r[0] for r in rows]


def mask(value: object, kind: str = "text") -> str:
    """One value masked by the rule of its kind (by length, when the kind is not known)."""
    return _one(kind, str(value))


def shown(value: object, kind: str | None) -> object:
    """A value as a report shows it: masked when its column is personal (kind given) or when it
    looks like an ID or mobile number; numbers and booleans as they are."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    if kind is not None:
        return mask(text, kind)
    return mask(text) if PERSONAL_VALUE.search(text) else text
