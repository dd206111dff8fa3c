"""What every reader of a delivered file shares: the Delivery it found (file, rows, hash, header
layout), the header matching against the contract (by name; missing optional columns arrive as
null, unknown ones are kept in `_extra_columns`), the positional mapping of a read to bronze's
columns, the row numbering, and DeliveryError, which names file, line and column."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from openpyxl.utils import get_column_letter
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from citylake.config import SourceContract
from citylake.errors import CityLakeError

CHUNK = 1 << 22


# Python codec names → the charset names Spark's readers take (Spark reads no byte-order mark;
# the header line, where a BOM sits, is skipped by the reader).
SPARK_CHARSETS = {"utf-8-sig": "utf-8"}


EXTRA_COLUMNS = "_extra_columns"


# Reason codes the reader itself found on a record (a JSON line that is no object, a formula cell
# without its value, an invalid polygon...): silver quarantines the record with them.
INGEST_REASONS = "_ingest_reasons"


NOT_JSON_OBJECT = "_row.not_json_object"  # a line holding no JSON object: no fields to judge


# Spark's JSON reader is lenient by default (single quotes, comments...); deliveries are JSON.
STRICT_JSON = {
    "allowSingleQuotes": "false",
    "allowComments": "false",
    "allowUnquotedFieldNames": "false",
    "allowNonNumericNumbers": "false",
    "allowBackslashEscapingAnyCharacter": "false",
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": "_not_json",
}


EXTRA_TYPE = "map<string,string>"


LOG = logging.getLogger(__name__)


class DeliveryError(CityLakeError, ValueError):
    """A delivered file breaks its contract. Not transient: retrying will not help."""


@dataclass(frozen=True)
class Layout:
    """Where each contract column sits in a delivered file, matched by header."""

    headers: tuple[str, ...]  # as delivered, in file order ('' for a blank header cell)
    positions: dict[str, int]  # contract column name → index into headers
    extra: tuple[str, ...] = ()  # delivered headers the contract does not know: kept in bronze
    absent: tuple[str, ...] = ()  # optional contract headers not delivered: null in bronze

    def report(self) -> dict:
        return {"extra_columns": list(self.extra), "absent_columns": list(self.absent)}


@dataclass(frozen=True)
class Delivery:
    path: Path
    source_file: str  # path relative to the landing root, as recorded in lineage
    sha256: str
    rows: int  # data rows (records) in the file
    layout: Layout | None = field(default=None)


def layout_of(path: Path, contract: SourceContract, found: list[str], where: str) -> Layout:
    """Match delivered headers to the contract by name; fail on a missing required column."""
    found = [h.strip() for h in found]
    repeated = sorted({h for h in found if h and found.count(h) > 1})
    if repeated:
        raise DeliveryError(
            f"{path}: {where}: columns {repeated} appear more than once; each header must be unique"
        )
    expected = [c for c in contract.columns if c.type != "geometry" or contract.format != "geojson"]
    positions = {c.name: found.index(c.header) for c in expected if c.header in found}
    missing = [c.header for c in expected if c.header not in found and c.required]
    if missing:
        raise DeliveryError(
            f"{path}: {where}: missing required columns {missing}; the contract "
            f"conf/sources/{contract.source_id}.yaml expects {contract.headers}"
        )
    known = set(contract.headers)
    return Layout(
        headers=tuple(found),
        positions=positions,
        extra=tuple(
            h or f"({get_column_letter(i + 1)})" for i, h in enumerate(found) if h not in known
        ),
        absent=tuple(c.header for c in expected if c.header not in found),
    )


def check_header(path: Path, contract: SourceContract, first_line: str) -> Layout:
    try:
        found = next(
            csv.reader(
                io.StringIO(first_line.lstrip("\ufeff").rstrip("\r")),
                delimiter=contract.delimiter,
            )
        )
    except csv.Error as exc:
        raise DeliveryError(f"{path}: line 1 (header): not a CSV header line ({exc})") from exc
    return layout_of(path, contract, found, "line 1 (header)")


def by_position(frame: DataFrame, contract: SourceContract, layout: Layout) -> DataFrame:
    """Positional fields → contract columns (null when absent) + the unknown ones as a map."""
    columns = [
        (F.col(f"_f{layout.positions[c.name]}") if c.name in layout.positions else F.lit(None))
        .cast("string")
        .alias(c.name)
        for c in contract.columns
    ]
    known = set(contract.headers)
    extra = [
        x
        for i, header in enumerate(layout.headers)
        if header not in known
        for x in (F.lit(header or f"({get_column_letter(i + 1)})"), F.col(f"_f{i}"))
    ]
    extras = F.create_map(*extra) if extra else F.lit(None).cast(EXTRA_TYPE)
    rest = [c for c in ("_malformed_line", INGEST_REASONS, "_row_number") if c in frame.columns]
    return frame.select(*columns, extras.alias(EXTRA_COLUMNS), *rest)


def with_row_numbers(frame: DataFrame, **per_split: Column) -> tuple[DataFrame, list[Row]]:
    """Adds _row_number, the 1-based record number in the file; returns the first pass's rows.

    Spark reads a file in byte-range splits, in order within each split. A cheap first pass
    counts the records of each split; the second numbers each record by its split's offset plus its
    position inside the split. No window over the whole file (that would run on one core).
    `per_split` aggregates ride along the first pass (its rows carry them by name).
    """
    tagged = frame.withColumn("_split", F.input_file_block_start()).withColumn(
        "_position", F.monotonically_increasing_id()
    )
    splits = (
        tagged.groupBy("_split")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.min("_position").alias("first"),
            *[aggregate.alias(name) for name, aggregate in per_split.items()],
        )
        .orderBy("_split")
        .collect()
    )
    number = None
    offset = 0
    for split in splits:
        start = F.lit(offset + 1) + F.col("_position") - F.lit(split["first"])
        number = (
            F.when(F.col("_split") == split["_split"], start)
            if number is None
            else number.when(F.col("_split") == split["_split"], start)
        )
        offset += split["n"]
    if number is None:
        return frame.withColumn("_row_number", F.lit(None).cast("long")), splits
    return tagged.withColumn("_row_number", number).drop("_split", "_position"), splits


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DeliveryError(f"{path}: cannot read the delivered file: {exc.strerror}") from exc
    return digest.hexdigest()
