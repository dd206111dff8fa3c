"""Standardization rules as native Spark expressions (no Python UDFs): they run the same in local
mode, on a cluster and through Spark Connect, and at the speed of the JVM.

Every function takes and returns Columns or DataFrames and does no I/O, so each is tested on a
handful of rows. Reason codes are stable; their Chinese and English texts live in
quality/reason_codes.yaml.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from citylake.divisions import division_eras

FULLWIDTH = "０１２３４５６７８９ＸｘＡＢＣＤＥＦＧＨＪＫＬＭＮＰＱＲＴＵＷＹ－／"
HALFWIDTH = "0123456789XxABCDEFGHJKLMNPQRTUWY-/"
# GB 11643 / ISO 7064 MOD 11-2: weight of position i (0-based) is 2^(17-i) mod 11.
RIC_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]
RIC_PATTERN = r"^\d{17}[\dX]$"
RIC_CHECK = "10X98765432"  # check character for (sum of weighted digits) mod 11


# Characters no department means to send: C0 controls other than the blanks (tab, newline, vertical
# tab, form feed, carriage return), DEL, C1 controls, zero-width spaces and joiners, and a byte-order
# mark inside a value. NUL among them: a NUL byte ends a string in C and hides the rest of a value.
# Removed in silver (bronze and quarantine keep what was delivered); the same class in pandas_rules.
INVISIBLE = "[\\x00-\\x08\\x0e-\\x1f\\x7f-\\x9f\\u200b-\\u200d\\u2060\\ufeff]"


def clean_text(column: Column) -> Column:
    """Remove invisible control characters (INVISIBLE), turn full-width digits and letters to
    half-width, collapse inner blanks, trim; '' → null."""
    visible = F.regexp_replace(column, INVISIBLE, "")
    text = F.regexp_replace(F.translate(visible, FULLWIDTH + "　", HALFWIDTH + " "), r"\s+", " ")
    text = F.trim(text)
    return F.when(text == "", None).otherwise(text)


def clean_id_number(column: Column) -> Column:
    """ID number as printed on a card: no blanks, half-width, upper-case X."""
    return F.upper(F.regexp_replace(clean_text(column), r"\s", ""))


def ric_check_character(first17: Column) -> Column:
    """The GB 11643 check character of 17 digits."""
    total = sum(
        F.substring(first17, i + 1, 1).cast("int") * weight for i, weight in enumerate(RIC_WEIGHTS)
    )
    return F.substring(F.lit(RIC_CHECK), (total % 11) + 1, 1)


def number_reasons(number: Column, column: str, pattern: str, check_character) -> list[Column]:
    """The rules every 18-character check-digit number shares (GB 11643, GB 32100): missing,
    not in its format, wrong check character. check_character maps the first 17 characters to
    the 18th."""
    well_formed = number.rlike(pattern)
    return [
        F.when(number.isNull(), F.lit(f"{column}.missing")),
        F.when(number.isNotNull() & ~well_formed, F.lit(f"{column}.format")),
        F.when(
            well_formed
            & (F.substring(number, 18, 1) != check_character(F.substring(number, 1, 17))),
            F.lit(f"{column}.check_character"),
        ),
    ]


def upgrade_ric15(number: Column) -> Column:
    """A legacy 15-digit number becomes 18 digits: '19' before the year, then the check character."""
    first17 = F.concat(F.substring(number, 1, 6), F.lit("19"), F.substring(number, 7, 9))
    return F.when(
        number.rlike(r"^\d{15}$"), F.concat(first17, ric_check_character(first17))
    ).otherwise(number)


def parse_date(column: Column) -> Column:
    """A date in the forms departments really send: 2023-05-01, 2023/5/1, 20230501, 2023年5月1日,
    or an Excel serial day number. Anything else is null (and the caller records a reason)."""
    return parse_clean_date(clean_text(column))


def parse_clean_date(text: Column) -> Column:
    """parse_date of text already through clean_text (keeps the expression tree small)."""
    excel_serial = F.when(
        text.rlike(r"^\d{5}$"), F.date_add(F.lit("1899-12-30").cast("date"), text.cast("int"))
    )
    return F.coalesce(
        F.try_to_date(text, "yyyy-M-d"),
        F.try_to_date(text, "yyyy/M/d"),
        F.when(text.rlike(r"^\d{8}$"), F.try_to_date(text, "yyyyMMdd")),
        F.try_to_date(text, "yyyy年M月d日"),
        excel_serial,
    )


# 1,234,567.89: thousands separators as Excel and accounting systems print them.
_GROUPED_NUMBER = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"
_PLAIN_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


def _number_text(column: Column) -> Column:
    text = clean_text(column)
    text = F.when(text.rlike(_GROUPED_NUMBER), F.regexp_replace(text, ",", "")).otherwise(text)
    return F.when(text.rlike(_PLAIN_NUMBER), text)


def parse_decimal(column: Column, scale: int = 4) -> Column:
    """A number as departments write it (12.5, -3, 1,234.50, 1e3, full-width digits) as
    DECIMAL(18, scale), rounded half-up to `scale` places (the contract column's); null when it is
    not a number or does not fit."""
    return _number_text(column).try_cast(f"decimal(18,{scale})")


def parse_integer(column: Column) -> Column:
    """A whole number (12, 12.0, 1,200) as BIGINT; null for 12.5, text or an overflow."""
    number = _number_text(column).try_cast("decimal(38,4)")
    return F.when(number == F.floor(number), number.try_cast("bigint"))


# Date-and-time forms departments use; ISO 8601 with 'T', fractions and a zone goes to the cast.
TIMESTAMP_FORMATS = (
    "yyyy-M-d H:m:s",
    "yyyy-M-d H:m",
    "yyyy/M/d H:m:s",
    "yyyy/M/d H:m",
    "yyyy年M月d日 H:m:s",
    "yyyy年M月d日 H:m",
    "yyyy年M月d日 H时m分s秒",
    "yyyy年M月d日 H时m分",
)
_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$"
_EXCEL_SERIAL = r"^\d{5}(\.\d+)?$"


def parse_timestamp(column: Column) -> Column:
    """A moment in the forms departments send: '2023-05-01 08:30:00', '2023/5/1 8:30',
    '2023-05-01T08:30:00+08:00' (ISO 8601; a zone is converted to the session's, Asia/Shanghai),
    '20230501083000', an Excel serial with a day fraction ('45047.354166667', rounded to the
    second), or a bare date in any parse_date form (midnight). Anything else is null.

    Give it a column already through clean_text (a column of its own, not an expression): the text
    is read a dozen times here, and an inlined cleaning would make Spark's generated code too big.
    """
    text = column
    serial = text.try_cast("decimal(18,9)")
    day = F.date_add(F.lit("1899-12-30").cast("date"), F.floor(serial).cast("int"))
    seconds = F.round((serial - F.floor(serial)) * 86400).cast("long")
    excel = F.timestamp_seconds(F.unix_timestamp(day.cast("timestamp")) + seconds)
    return F.coalesce(
        *[F.try_to_timestamp(text, F.lit(pattern)) for pattern in TIMESTAMP_FORMATS],
        F.when(text.rlike(_ISO_TIMESTAMP), F.try_to_timestamp(text)),
        F.when(text.rlike(r"^\d{14}$"), F.try_to_timestamp(text, F.lit("yyyyMMddHHmmss"))),
        F.when(text.rlike(_EXCEL_SERIAL), excel),
        parse_clean_date(text).cast("timestamp"),
    )


_TRUE = ("是", "true", "t", "y", "yes", "1")
_FALSE = ("否", "false", "f", "n", "no", "0")


def parse_boolean(column: Column) -> Column:
    """是/否, true/false, Y/N, 1/0 (any case) as BOOLEAN; anything else null."""
    text = F.lower(clean_text(column))
    return F.when(text.isin(*_TRUE), F.lit(True)).when(text.isin(*_FALSE), F.lit(False))


_POLYGON = "struct<type: string, coordinates: array<array<array<double>>>>"
_MULTI_POLYGON = "struct<type: string, coordinates: array<array<array<array<double>>>>>"


def _valid_polygon(rings: Column) -> Column:
    """GeoJSON (RFC 7946 §3.1.6): at least one linear ring; each ring closed, of 4 or more
    positions; each position [longitude, latitude(, height)] within WGS 84's range."""

    def position_ok(p: Column) -> Column:
        return (
            F.size(p).between(2, 3)
            & p[0].between(-180, 180)
            & p[1].between(-90, 90)
            & F.forall(p, lambda x: x.isNotNull())
        )

    def ring_ok(r: Column) -> Column:
        return (
            (F.size(r) >= 4)
            & F.forall(r, position_ok)
            & (F.element_at(r, 1) == F.element_at(r, -1))
        )

    return F.coalesce((F.size(rings) >= 1) & F.forall(rings, ring_ok), F.lit(False))


def clean_geometry(column: Column) -> Column:
    """The GeoJSON geometry text, trimmed ('' and JSON null → null)."""
    text = F.trim(column)
    return F.when((text != "") & (text != "null"), text)


def is_valid_geometry(column: Column) -> Column:
    """True when the text is a GeoJSON Polygon or MultiPolygon with well-formed coordinates."""
    kind = F.get_json_object(column, "$.type")
    polygon = F.from_json(column, _POLYGON)["coordinates"]
    multi = F.from_json(column, _MULTI_POLYGON)["coordinates"]
    return F.coalesce(
        F.when(kind == "Polygon", _valid_polygon(polygon)).when(
            kind == "MultiPolygon",
            F.coalesce((F.size(multi) >= 1) & F.forall(multi, _valid_polygon), F.lit(False)),
        ),
        F.lit(False),
    )


def clean_phone(column: Column) -> Column:
    """Digits only, without a +86 prefix; null when it is neither a mobile nor a landline number."""
    digits = F.regexp_replace(clean_text(column), r"[^\d]", "")
    digits = F.regexp_replace(digits, r"^(0086|86)(1\d{10})$", "$2")
    return F.when(digits.rlike(r"^(1[3-9]\d{9}|0\d{9,11})$"), digits)


def division_eras_frame(spark) -> DataFrame:
    """One row per GB/T 2260 code with the array of its validity eras (small; broadcast it)."""
    rows = [(e.code, e.first_year, e.last_year) for e in division_eras()]
    eras = spark.createDataFrame(rows, "code string, first_year int, last_year int")
    return eras.groupBy("code").agg(
        F.collect_list(F.struct("first_year", "last_year")).alias("eras")
    )


def with_ric_checks(df: DataFrame, column: str, eras: DataFrame, as_of: Column) -> DataFrame:
    """Normalise an ID number column in place and add its derived fields and reason codes.

    Adds <column>_reasons (array of reason codes; empty when valid), and what the number itself
    says: <column>_birth_date, <column>_sex ('男'/'女') and <column>_division (the division code of
    first registration, as printed). Prefixed, so a contract may hold several ID number columns.
    """
    number = upgrade_ric15(clean_id_number(F.col(column)))
    df = df.withColumn(column, number)
    digits = F.col(column)
    birth = F.try_to_date(F.substring(digits, 7, 8), "yyyyMMdd")
    year = F.year(birth)
    df = df.withColumn(f"{column}_birth_date", birth)
    df = df.join(
        F.broadcast(eras.withColumnRenamed("code", "_era_code")),
        F.substring(digits, 1, 6) == F.col("_era_code"),
        "left",
    )
    era_valid = F.exists(
        F.col("eras"),
        lambda e: (
            (F.coalesce(e["first_year"], F.lit(0)) <= year)
            & (year <= F.coalesce(e["last_year"], F.lit(9999)))
        ),
    )
    well_formed = digits.rlike(RIC_PATTERN)
    reasons = F.array_compact(
        F.array(
            *number_reasons(digits, column, RIC_PATTERN, ric_check_character),
            F.when(
                well_formed & (birth.isNull() | (birth > as_of) | (year < 1890)),
                F.lit(f"{column}.birth_date"),
            ),
            F.when(
                well_formed
                & birth.isNotNull()
                & (F.col("eras").isNull() | ~F.coalesce(era_valid, F.lit(False))),
                F.lit(f"{column}.division_era"),
            ),
        )
    )
    return (
        df.withColumn(f"{column}_reasons", reasons)
        .withColumn(
            f"{column}_sex",
            F.when(
                well_formed,
                F.when(F.substring(digits, 17, 1).cast("int") % 2 == 1, "男").otherwise("女"),
            ),
        )
        .withColumn(f"{column}_division", F.when(well_formed, F.substring(digits, 1, 6)))
        .drop("_era_code", "eras")
    )


def map_codes(column: Column, mapping: dict[str, str]) -> Column:
    """Map codes through a small dictionary (e.g. historical → current division); unknown → null."""
    pairs = [F.lit(x) for kv in sorted(mapping.items()) for x in kv]
    return F.create_map(*pairs)[column]
