"""Bronze → silver + quarantine, driven by the source contract: no per-table code.

Each column's contract type picks its rules (ID number, date, division code, phone...). A row that
breaks a hard rule goes to quarantine.<source_id> with its original values, file, row number and
reason codes "<column>.<rule>" (texts in quality/reason_codes.yaml). For every batch,
delivered = accepted + quarantined, or the step fails.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from citylake import reasons
from citylake.config import City, SourceContract
from pipelines import standardize as S
from pipelines.credit_code import with_uscc_checks
from pipelines.delivery import EXTRA_COLUMNS, INGEST_REASONS, NOT_JSON_OBJECT

LINEAGE = ["_source_file", "_batch_id", "_ingested_at", "_delivery_date", "_row_number"]
# Contract type → (parser of the delivered text, rule of the reason code when it cannot parse).
PARSERS = {
    "decimal": (S.parse_decimal, "malformed_number"),
    "integer": (S.parse_integer, "malformed_number"),
    "boolean": (S.parse_boolean, "malformed_boolean"),
}


def _reason(condition: Column, code: str) -> Column:
    return F.when(condition, F.lit(reasons.require(code)))


def standardize(
    bronze: DataFrame, contract: SourceContract, city: City, eras: DataFrame, as_of: dt.date
) -> DataFrame:
    """Typed, normalised columns plus `_reasons` (array of reason codes; empty = accepted).

    Original text values are kept as `_original` (a struct) so quarantine can show what was sent.
    """
    as_of_col = F.lit(as_of).cast("date")
    end_of_as_of = F.date_add(as_of_col, 1).cast("timestamp")  # a moment on as_of is not future
    frame = bronze.withColumn("_original", F.struct(*contract.column_names))
    # A malformed record is "_row.malformed_row" unless the reader said more precisely why.
    precise = (
        F.size(F.coalesce(F.col(INGEST_REASONS), F.array())) > 0
        if INGEST_REASONS in bronze.columns
        else F.lit(False)
    )
    reasons: list[Column] = [
        _reason(F.col("_malformed_line").isNotNull() & ~precise, "_row.malformed_row")
    ]
    reason_arrays: list[Column] = []  # rule sets that already yield arrays (ID number checks)
    for column in contract.columns:
        name = column.name
        absent = None  # when set: the delivered text was blank (a bad value is not also missing)
        if column.type in ("id_number", "credit_code"):
            if column.type == "id_number":
                frame = S.with_ric_checks(frame, name, eras, as_of_col)
            else:
                frame = with_uscc_checks(frame, name)
            number_reasons = F.col(f"{name}_reasons")
            if not column.required:  # an optional number may be absent, never wrong
                number_reasons = F.array_remove(number_reasons, f"{name}.missing")
            reason_arrays.append(number_reasons)
            continue
        if column.type == "date":
            raw = S.clean_text(F.col(f"_original.{name}"))  # the text as delivered
            frame = frame.withColumn(name, S.parse_date(F.col(name)))
            absent = raw.isNull()
            reasons += [
                _reason(raw.isNotNull() & F.col(name).isNull(), f"{name}.malformed_date"),
                _reason(
                    F.lit(not column.future_allowed) & (F.col(name) > as_of_col),
                    f"{name}.future_date",
                ),
            ]
        elif column.type == "division_code":
            frame = frame.withColumn(name, S.clean_text(F.col(name)))
            known = F.col(name).isin(city.division_codes)
            reasons.append(_reason(F.col(name).isNotNull() & ~known, f"{name}.unknown_division"))
        elif column.type == "timestamp":
            raw = S.clean_text(F.col(f"_original.{name}"))
            frame = frame.withColumn(name, S.clean_text(F.col(name)))  # parsed from one column
            frame = frame.withColumn(name, S.parse_timestamp(F.col(name)))
            absent = raw.isNull()
            reasons += [
                _reason(raw.isNotNull() & F.col(name).isNull(), f"{name}.malformed_timestamp"),
                _reason(F.col(name) >= end_of_as_of, f"{name}.future_timestamp"),
            ]
        elif column.type in PARSERS:
            raw = S.clean_text(F.col(f"_original.{name}"))
            parse, rule = PARSERS[column.type]
            options = {"scale": column.scale} if column.type == "decimal" else {}
            frame = frame.withColumn(name, parse(F.col(name), **options))
            absent = raw.isNull()
            reasons.append(_reason(raw.isNotNull() & F.col(name).isNull(), f"{name}.{rule}"))
        elif column.type == "geometry":
            frame = frame.withColumn(name, S.clean_geometry(F.col(name)))
            valid = S.is_valid_geometry(F.col(name))
            reasons.append(_reason(F.col(name).isNotNull() & ~valid, f"{name}.malformed_geometry"))
        elif column.type == "phone":
            frame = frame.withColumn(name, S.clean_phone(F.col(name)))
        else:
            frame = frame.withColumn(name, S.clean_text(F.col(name)))
        if column.required:
            missing = F.col(name).isNull() if absent is None else absent
            reasons.append(_reason(missing, f"{name}.missing"))
    if (
        INGEST_REASONS in frame.columns
    ):  # what the reader found (bronze of an older layout has none)
        reason_arrays.append(F.coalesce(F.col(INGEST_REASONS), F.array().cast("array<string>")))
    found = F.array_distinct(F.array_compact(F.concat(F.array(*reasons), *reason_arrays)))
    if INGEST_REASONS in frame.columns:  # a line with no object in it has no fields to judge
        unparsed = F.array_contains(F.col(INGEST_REASONS), NOT_JSON_OBJECT)
        found = F.when(unparsed, F.array(F.lit(NOT_JSON_OBJECT))).otherwise(found)
    frame = frame.withColumn("_reasons", found)
    frame = with_duplicates_among_valid(frame, contract.business_key)
    return frame.drop(
        *[f"{c.name}_reasons" for c in contract.columns if c.type in ("id_number", "credit_code")],
    )


def with_duplicates_among_valid(frame: DataFrame, keys: list[str]) -> DataFrame:
    """Duplicates are judged among the rows that are otherwise valid: of a business key's valid
    rows the first in the file (lowest _row_number) is accepted, every later valid one gets
    `<key>.duplicate_key`. An invalid row never takes a key from a valid twin; it is quarantined
    for its own reasons. Every row of a key that has an accepted row carries that row's number
    as _kept_row_number (in quarantine: which row won)."""
    keyed = F.coalesce(*[F.col(k) for k in keys]).isNotNull()
    valid = F.size("_reasons") == 0
    kept = F.min(F.when(valid, F.col("_row_number"))).over(Window.partitionBy(*keys))
    frame = frame.withColumn("_kept_row_number", F.when(keyed, kept))
    duplicate = valid & keyed & (F.col("_row_number") != F.col("_kept_row_number"))
    codes = F.array(*[F.lit(f"{k}.duplicate_key") for k in keys[:1]])
    return frame.withColumn("_reasons", F.when(duplicate, codes).otherwise(F.col("_reasons")))


def accepted(standardized: DataFrame) -> DataFrame:
    return standardized.where(F.size("_reasons") == 0).drop(
        "_reasons", "_original", "_malformed_line", "_kept_row_number", EXTRA_COLUMNS,
        *([INGEST_REASONS] if INGEST_REASONS in standardized.columns else []),
    )  # fmt: skip


def quarantined(standardized: DataFrame) -> DataFrame:
    """Rejected rows: original values, lineage and reasons; nothing typed, nothing lost (columns
    the contract does not know stay in bronze, found there by _batch_id and _row_number)."""
    return standardized.where(F.size("_reasons") > 0).select(
        "_original.*",
        "_malformed_line",
        F.col("_reasons").alias("reason_codes"),
        "_kept_row_number",
        *LINEAGE,
    )
