"""Where did a fact come from? `citylake trace <key>` answers file by file.

A key is an ID number (公民身份号码) or a credit code (统一社会信用代码). Every source contract
column of that type is searched in silver (all versions, SCD2 history included) and in quarantine
(what was delivered but refused), and every gold table whose key or reference columns hold it.
Each hit names the department's file, the batch, the delivery date and the row number, so a
question about a person's record leads straight to the line of the file that said so.

Time travel: with `as_of` (a time on the city's clock), every table is read at the newest version
committed by then (Lake.version_at, from the Delta log), so "what did the register say on date D"
is the same query with a date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from citylake import catalogue
from citylake.config import SourceContract
from citylake.lake import Lake
from pipelines.standardize import clean_text

KEY_TYPES = ("id_number", "credit_code")
SHOWN = 4  # value columns shown per hit besides the key


@dataclass(frozen=True)
class Hit:
    layer: str
    table: str
    column: str
    source_file: str | None
    batch_id: str | None
    delivery_date: dt.date | None
    row_number: int | None
    version_info: str  # SCD2 validity, quarantine reasons, or ''
    facts: dict


def _read(lake: Lake, layer: str, name: str, as_of: dt.datetime | None) -> DataFrame | None:
    """The table as it stood at as_of (the city's clock; None: now), None if it did not exist."""
    if not lake.exists(layer, name):
        return None
    if as_of is None:
        return lake.read(layer, name)
    version = lake.version_at(layer, name, as_of)
    return None if version is None else lake.read(layer, name, version)


def _hits(frame: DataFrame, layer: str, table: str, column: str, condition) -> list[Hit]:
    value_columns = [c for c in frame.columns if not c.startswith("_") and c != column]
    rows = frame.where(condition).collect()
    hits = []
    for row in rows:
        data = row.asDict()
        if "valid_from" in data:
            info = f"valid {data['valid_from']} → {data['valid_to'] or 'now'}"
            info += " (current)" if data.get("is_current") else ""
        elif "reason_codes" in data:
            info = "quarantined: " + ", ".join(data["reason_codes"] or [])
        else:
            info = ""
        hits.append(
            Hit(
                layer=layer,
                table=table,
                column=column,
                source_file=data.get("_source_file"),
                batch_id=data.get("_batch_id"),
                delivery_date=data.get("_delivery_date"),
                row_number=data.get("_row_number"),
                version_info=info,
                facts={c: data[c] for c in value_columns[:SHOWN] if c in data},
            )
        )
    return hits


def trace(
    lake: Lake,
    contracts: dict[str, SourceContract],
    key: str,
    as_of: dt.datetime | None = None,
) -> list[Hit]:
    key = key.strip().upper()
    found: list[Hit] = []
    for contract in contracts.values():
        columns = [c.name for c in contract.columns if c.type in KEY_TYPES]
        if not columns:
            continue
        silver = _read(lake, "silver", contract.silver_table, as_of)
        quarantine = _read(lake, "quarantine", contract.source_id, as_of)
        for column in columns:
            if silver is not None:
                found += _hits(
                    silver, "silver", contract.silver_table, column, F.col(column) == key
                )
            if quarantine is not None:
                delivered = F.upper(clean_text(F.col(column)))
                found += _hits(
                    quarantine, "quarantine", contract.source_id, column, delivered == key
                )
    for table in catalogue.GOLD_TABLES:
        gold = _read(lake, "gold", table.name, as_of)
        if gold is None:
            continue
        for column in table.column_names:
            if column.endswith(("id_number", "credit_code", "_key")) and column != "person_key":
                found += _hits(gold, "gold", table.name, column, F.col(column) == key)
    return found
