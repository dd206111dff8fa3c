"""Landing → bronze: each delivered file exactly once, as delivered, with lineage.

Formats (the contract's `format`): CSV (UTF-8, UTF-8 with BOM, GBK, GB18030), XLSX, JSON lines,
GeoJSON. Before bronze is written:

* the file is hashed (sha256, the key of ops.ingest_manifest: the same content twice is a no-op, a
  corrected re-delivery is a new batch) and, for text formats, strictly decoded with the contract's
  encoding, so a wrong encoding fails loudly naming the file, line and byte;
* its header (CSV, XLSX) or keys (JSON lines: of every object; GeoJSON: of every feature's
  properties) are matched to the contract's headers by name:
  a missing required column fails the file naming it; a missing optional column arrives as null;
  a column the contract does not know is kept in bronze (`_extra_columns`, header → text) and
  reported in the ingest summary. Nothing delivered is dropped;
* the delivered records are counted independently of Spark (CSV: on bytes, quote-aware, so a field
  with embedded newlines is one record), and bronze must reconcile with that count.

Bronze keeps every delivered value as text, plus _extra_columns, _malformed_line (the raw record
when its shape is wrong: wrong field count, a truncated last line, an XLSX row wider than its
header, a JSON line that is no object, a GeoJSON member that is not a Feature; quarantined
later, never dropped), _source_file, _batch_id, _ingested_at, _delivery_date and _row_number: the
1-based data record in a CSV or JSON lines file (blank lines are none), the sheet's own row number
in an XLSX file (the header is row 1), the feature's 1-based position in a GeoJSON
FeatureCollection.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import mmap
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from citylake.config import Environment, SourceContract
from citylake.errors import CityLakeError
from pipelines import ops
from pipelines.lake import Lake, latest_version

MANIFEST = "ingest_manifest"
CHUNK = 1 << 22
XLSX_STAGING_ROWS = 50_000  # rows per Parquet row group written while streaming a sheet
# Python codec names → the charset names Spark's readers take (Spark reads no byte-order mark;
# the header line, where a BOM sits, is skipped by the reader).
SPARK_CHARSETS = {"utf-8-sig": "utf-8"}
EXTRA_COLUMNS = "_extra_columns"
_EXTRA_TYPE = "map<string,string>"


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


def delivery_dir(env: Environment, contract: SourceContract, delivery_date: dt.date) -> Path:
    return env.landing / contract.department / contract.source_name / delivery_date.isoformat()


def find_deliveries(
    env: Environment, contract: SourceContract, delivery_date: dt.date
) -> list[Path]:
    """The files delivered for one source on one date, in the order they arrived (modification
    time, then name): a correction delivered later that day is applied after what it corrects.

    A daily source with nothing delivered is an error (the department missed a delivery); a weekly
    or monthly source simply has no delivery on most days.
    """
    folder = delivery_dir(env, contract, delivery_date)
    files = sorted(
        (p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
    )
    if not files and contract.frequency == "daily":
        raise DeliveryError(
            f"{contract.source_id}: no file delivered for {delivery_date} in {folder} "
            f"({contract.department_name} delivers {contract.frequency})"
        )
    return files


# ----------------------------------------------------------------------------- headers


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
    found = next(
        csv.reader(
            io.StringIO(first_line.lstrip("\ufeff").rstrip("\r")), delimiter=contract.delimiter
        )
    )
    return layout_of(path, contract, found, "line 1 (header)")


# ----------------------------------------------------------------------------- text files


class _RecordCounter:
    """Counts CSV records on bytes, as Spark's reader sees them.

    A newline ends a record unless it lies inside a quoted field; RFC 4180 doubles a quote inside
    a quoted field, so the parity of the quotes on a line tells whether the field is still open.
    Blank lines between records are no records (Spark skips them). Neither '\\n' nor '"' ever
    occurs inside a UTF-8, GBK or GB18030 multi-byte character, so bytes suffice. Lines without a
    quote (the common case) are counted in C; only quoted ones are walked in Python.
    """

    def __init__(self, quote_aware: bool):
        self.quote_aware = quote_aware
        self.records = 0
        self.in_quote = False
        self.pending = b""  # the unfinished last line

    def feed(self, chunk: bytes) -> None:
        data = self.pending + chunk
        end = data.rfind(b"\n")
        if end < 0:
            self.pending = data
            return
        lines = data[:end].split(b"\n")
        self.pending = data[end + 1 :]
        if not self.in_quote and (not self.quote_aware or b'"' not in data[:end]):
            self.records += len(lines) - lines.count(b"") - lines.count(b"\r")
            return
        for line in lines:
            if not self.in_quote and line in (b"", b"\r"):
                continue
            if line.count(b'"') & 1:
                self.in_quote = not self.in_quote
            if not self.in_quote:
                self.records += 1

    def close(self) -> int:
        # A last line without a newline is a record; so is a quote left open at the end of the
        # file (a truncated delivery: Spark returns it as one malformed record).
        if self.in_quote or self.pending.strip(b"\r"):
            self.records += 1
        return self.records


def _contains(path: Path, needle: bytes) -> bool:
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(needle) >= 0


def inspect_delivery(path: Path, contract: SourceContract, landing_root: Path) -> Delivery:
    """Hash, strictly decode and count one text file; match its header against the contract."""
    decoder = codecs.getincrementaldecoder(contract.encoding)(errors="strict")
    digest = hashlib.sha256()
    counter = _RecordCounter(quote_aware=contract.format == "csv")
    line, offset, first_line = 1, 0, None
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    bad_line = line + chunk[: exc.start].count(b"\n")
                    raise DeliveryError(
                        f"{path}: line {bad_line}, byte {offset + exc.start}: not valid "
                        f"{contract.encoding} ({exc.reason}); the contract "
                        f"conf/sources/{contract.source_id}.yaml says encoding: {contract.encoding}"
                    ) from exc
                if first_line is None:
                    first_line = text.split("\n", 1)[0]
                counter.feed(chunk)
                line += chunk.count(b"\n")
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except OSError as exc:
        raise DeliveryError(f"{path}: cannot read the delivered file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:  # the file ends inside a multi-byte character
        raise DeliveryError(
            f"{path}: line {line}: the file ends inside a {contract.encoding} character "
            f"(truncated?); the contract conf/sources/{contract.source_id}.yaml says "
            f"encoding: {contract.encoding}"
        ) from exc
    source_file = str(path.relative_to(landing_root))
    if offset == 0:
        raise DeliveryError(f"{path}: the file is empty (0 bytes); expected a header line")
    records = counter.close()
    if contract.format == "csv":
        if not (first_line or "").strip("\ufeff\r "):
            raise DeliveryError(f"{path}: line 1 is blank; expected the header line")
        layout = check_header(path, contract, first_line)
        return Delivery(path, source_file, digest.hexdigest(), records - 1, layout)
    if contract.format == "geojson":  # features are counted by the reader, not by lines
        return Delivery(path, source_file, digest.hexdigest(), 0)
    return Delivery(path, source_file, digest.hexdigest(), records)


def _peek_header(path: Path, contract: SourceContract) -> Layout:
    """The CSV header alone (the reader's schema needs it); inspect_delivery explains failures."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16).split(b"\n", 1)[0]
    try:
        first_line = head.decode(contract.encoding)
    except UnicodeDecodeError:
        inspect_delivery(path, contract, path.parent)  # raises, naming line and byte
        raise
    if not first_line.strip("\ufeff\r "):
        raise DeliveryError(
            f"{path}: the file is empty (0 bytes)"
            if path.stat().st_size == 0
            else f"{path}: line 1 is blank; expected the header line"
        )
    return check_header(path, contract, first_line)


def read_csv(
    spark: SparkSession, path: Path, contract: SourceContract, layout: Layout
) -> DataFrame:
    """The file's fields by position (_f0, _f1, ...) and _malformed_line, in file order.

    Quotes follow RFC 4180 (a quote inside a quoted field is doubled). A file with quotes is read
    record by record across lines (multiLine: a field may hold newlines), a file without them as
    lines, which Spark splits across cores. The reader's schema carries the delivered headers (so
    Spark finds them as expected), then the fields are renamed by position.
    """
    fields = [
        T.StructField(header or f"_f{i}", T.StringType()) for i, header in enumerate(layout.headers)
    ]
    frame = (
        spark.read.option("header", True)
        .option("encoding", SPARK_CHARSETS.get(contract.encoding, contract.encoding))
        .option("sep", contract.delimiter)
        .option("quote", '"')
        .option("escape", '"')
        .option("multiLine", _contains(path, b'"'))
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_malformed_line")
        .schema(T.StructType([*fields, T.StructField("_malformed_line", T.StringType())]))
        .csv(str(path))
    )
    return frame.toDF(*[f"_f{i}" for i in range(len(fields))], "_malformed_line")


def read_jsonl(spark: SparkSession, path: Path, contract: SourceContract) -> DataFrame:
    """JSON lines, one object per non-blank line, decoded with the contract's encoding: the
    contract's keys as its columns (every value as its JSON text), the line itself as _line (its
    keys are matched against the contract once counted, see jsonl_layout), and the line again as
    _malformed_line when it is no JSON object."""
    charset = SPARK_CHARSETS.get(contract.encoding, contract.encoding)
    line = F.ltrim(F.decode(F.col("value").cast("binary"), charset), F.lit("\ufeff"))
    lines = spark.read.text(str(path)).select(line.alias("_line")).where(F.col("_line") != "")
    schema = T.StructType([T.StructField(c.header, T.StringType()) for c in contract.columns])
    parsed = F.from_json("_line", schema)
    return lines.select(
        *[parsed[c.header].alias(c.name) for c in contract.columns],
        F.when(F.json_object_keys("_line").isNull(), F.col("_line")).alias("_malformed_line"),
        "_line",
    )


def jsonl_layout(path: Path, contract: SourceContract, splits: list) -> Layout:
    """The keys the file's objects use (the `keys` per split of with_row_numbers), matched to the
    contract as a CSV header is."""
    found = sorted({k for split in splits for keys in split["keys"] for k in keys})
    if not found:  # no line is a JSON object: every one is quarantined as malformed
        headers = tuple(c.header for c in contract.columns)
        return Layout(headers=(), positions={}, absent=headers)
    return layout_of(path, contract, found, "keys of its JSON objects")


def with_json_extras(frame: DataFrame, layout: Layout) -> DataFrame:
    """_extra_columns of each line: its non-null values of the keys the contract does not know."""
    extras = F.lit(None).cast(_EXTRA_TYPE)
    if layout.extra:
        values = F.from_json(
            "_line", T.StructType([T.StructField(k, T.StringType()) for k in layout.extra])
        )
        pairs = [x for k in layout.extra for x in (F.lit(k), values[k])]
        extras = F.map_filter(F.create_map(*pairs), lambda _, v: v.isNotNull())
        extras = F.when(F.size(extras) > 0, extras)
    return frame.withColumn(EXTRA_COLUMNS, extras).drop("_line")


def _by_position(frame: DataFrame, contract: SourceContract, layout: Layout) -> DataFrame:
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
    extras = F.create_map(*extra) if extra else F.lit(None).cast(_EXTRA_TYPE)
    rest = [c for c in ("_malformed_line", "_row_number") if c in frame.columns]
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


def _read_text_delivery(
    spark: SparkSession, path: Path, contract: SourceContract, landing_root: Path
) -> tuple[Delivery, DataFrame, int]:
    """CSV / JSON lines: the strict decode and the content hash (Python, one core) run while
    Spark's first pass counts the records of each split (the JVM); neither waits for the other.
    Returns the delivery, the numbered frame and how many records Spark's reader found."""
    layout = _peek_header(path, contract) if contract.format == "csv" else None
    with ThreadPoolExecutor(max_workers=1) as pool:
        inspected = pool.submit(inspect_delivery, path, contract, landing_root)
        try:
            if layout is not None:
                numbered, splits = with_row_numbers(read_csv(spark, path, contract, layout))
            else:
                frame = read_jsonl(spark, path, contract)
                # the key sets the file's objects use, found in the same pass
                keys = F.collect_set(F.array_sort(F.json_object_keys("_line")))
                numbered, splits = with_row_numbers(frame, keys=keys)
        finally:
            delivery = inspected.result()  # a bad delivery's own message comes first
    counted = sum(split["n"] for split in splits)
    if layout is None:
        layout = jsonl_layout(path, contract, splits)
        return replace(delivery, layout=layout), with_json_extras(numbered, layout), counted
    return delivery, _by_position(numbered, contract, layout), counted


# ----------------------------------------------------------------------------- XLSX


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DeliveryError(f"{path}: cannot read the delivered file: {exc.strerror}") from exc
    return digest.hexdigest()


def cell_text(value) -> str | None:
    """A cell as the department sees it in Excel, as text.

    Whole numbers without a spurious '.0', other numbers with Excel's 15 significant digits; date
    cells as ISO dates (with the time when there is one); a date typed as a plain number (an Excel
    serial like 45047) stays that number, which silver's date rules read.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def stage_xlsx(
    path: Path, contract: SourceContract, landing_root: Path, staging: Path, sha256: str
) -> Delivery:
    """Stream the first sheet (openpyxl, read-only) into staging Parquet: text fields _f0.. by
    position, _row_number (the sheet's row), _malformed_line (a row wider than its header)."""
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
        raise DeliveryError(
            f"{path}: not a readable XLSX workbook ({exc}); the contract "
            f"conf/sources/{contract.source_id}.yaml says format: xlsx"
        ) from exc
    try:
        if not workbook.worksheets:
            raise DeliveryError(f"{path}: the workbook has no sheet")
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        first_row = sheet.min_row or 1
        header = next(rows, None)
        while header is not None and all(v is None for v in header):  # blank rows above it
            header, first_row = next(rows, None), first_row + 1
        if header is None:
            raise DeliveryError(f"{path}: sheet '{sheet.title}' is empty; expected a header row")
        found = [cell_text(v) or "" for v in header]
        while found and not found[-1]:
            found.pop()
        layout = layout_of(
            path, contract, found, f"sheet '{sheet.title}', row {first_row} (header)"
        )
        width = len(found)
        schema = pa.schema(
            [pa.field(f"_f{i}", pa.string()) for i in range(width)]
            + [pa.field("_malformed_line", pa.string()), pa.field("_row_number", pa.int64())]
        )
        staging.mkdir(parents=True, exist_ok=True)
        count = 0
        buffer: list[list] = [[] for _ in range(width + 2)]
        with pq.ParquetWriter(staging / "rows.parquet", schema) as writer:
            for row_number, values in enumerate(rows, start=first_row + 1):
                texts = [cell_text(v) for v in values]
                if all(t is None or t == "" for t in texts):
                    continue  # a blank row is no record (as a blank CSV line)
                wider = any(t not in (None, "") for t in texts[width:])
                texts = (texts + [None] * width)[:width]
                for column, text in enumerate(texts):
                    buffer[column].append(text)
                buffer[width].append(
                    json.dumps([cell_text(v) for v in values], ensure_ascii=False)
                    if wider
                    else None
                )
                buffer[width + 1].append(row_number)
                count += 1
                if len(buffer[0] if width else buffer[width]) >= XLSX_STAGING_ROWS:
                    writer.write_batch(pa.record_batch(buffer, schema=schema))
                    buffer = [[] for _ in range(width + 2)]
            writer.write_batch(pa.record_batch(buffer, schema=schema))
    finally:
        workbook.close()
    return Delivery(path, str(path.relative_to(landing_root)), sha256, count, layout)


# ----------------------------------------------------------------------------- GeoJSON

_FEATURE = "struct<type: string, properties: map<string, string>, geometry: string>"


def read_geojson(
    spark: SparkSession, contract: SourceContract, delivery: Delivery
) -> tuple[Delivery, DataFrame]:
    """A FeatureCollection: one bronze row per feature, properties matched to the contract's
    headers by name, the geometry member kept as its JSON text (Spark's JSON reader hands a
    nested object to a string field as its text)."""
    collection = (
        spark.read.option("multiLine", True)
        .option("encoding", SPARK_CHARSETS.get(contract.encoding, contract.encoding))
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_malformed_file")
        .schema(f"type string, features array<{_FEATURE}>, _malformed_file string")
        .json(str(delivery.path))
    )
    keys = F.array_distinct(
        F.flatten(
            F.transform(
                F.coalesce("features", F.array().cast(f"array<{_FEATURE}>")),
                lambda f: F.coalesce(F.map_keys(f["properties"]), F.array().cast("array<string>")),
            )
        )
    )
    heads = collection.select(
        "type", "_malformed_file", F.size("features").alias("n"), keys.alias("keys")
    ).collect()
    if len(heads) != 1 or heads[0]["_malformed_file"] is not None:
        raise DeliveryError(
            f"{delivery.path}: not one valid JSON document (truncated or malformed); a GeoJSON "
            "FeatureCollection is expected"
        )
    (head,) = heads
    features = head["n"] if head["n"] is not None else -1  # size(null) is -1 or null
    if head["type"] != "FeatureCollection" or features < 0:
        raise DeliveryError(
            f"{delivery.path}: a GeoJSON FeatureCollection with a 'features' array is expected, found "
            f"type {head['type']!r}{'' if features >= 0 else ' without features'}"
        )
    layout = layout_of(delivery.path, contract, sorted(head["keys"]), "feature properties")
    known = [c.header for c in contract.columns]
    feature = F.col("feature")
    columns = [
        (feature["geometry"] if c.type == "geometry" else feature["properties"][c.header]).alias(
            c.name
        )
        for c in contract.columns
    ]
    extras = F.map_filter(feature["properties"], lambda k, _: ~k.isin(known))
    frame = collection.select(F.posexplode("features").alias("position", "feature")).select(
        *columns,
        F.when(F.size(extras) > 0, extras).alias(EXTRA_COLUMNS),
        F.when(
            feature.isNull() | (F.coalesce(feature["type"], F.lit("")) != "Feature"),
            F.coalesce(F.to_json(feature), F.lit("null")),
        ).alias("_malformed_line"),
        (F.col("position") + 1).cast("long").alias("_row_number"),
    )
    return Delivery(delivery.path, delivery.source_file, delivery.sha256, features, layout), frame


# ----------------------------------------------------------------------------- the step


def batch_id_of(contract: SourceContract, delivery_date: dt.date, delivery: Delivery) -> str:
    return f"{contract.source_id}:{delivery_date:%Y%m%d}:{delivery.sha256[:12]}"


def staging_dir(env: Environment, contract: SourceContract, sha256: str) -> Path:
    return env.root / "staging" / contract.source_id / sha256[:16]


@dataclass(frozen=True)
class Known:
    """A file content the manifest has seen: on which day first, and as which batch."""

    delivery_date: dt.date
    batch_id: str
    rows: int
    days: frozenset[dt.date]  # every day the content was recorded on


def arrived_at(path: Path) -> dt.datetime:
    """When a file reached the landing zone: its modification time, as an instant."""
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)


def ingest_source(lake: Lake, contract: SourceContract, delivery_date: dt.date) -> list[dict]:
    """Ingest every file delivered for one source on one date, in the order the files arrived;
    returns one summary per file."""
    repair_manifest(lake, contract)
    known = manifest_contents(lake, contract.source_id)
    return [
        ingest_file(lake, contract, delivery_date, path, known)
        for path in find_deliveries(lake.env, contract, delivery_date)
    ]


def ingest_file(
    lake: Lake,
    contract: SourceContract,
    delivery_date: dt.date,
    path: Path,
    known: dict[str, Known],
) -> dict:
    """One file: skipped when its content is already recorded for this day or an earlier one
    (on an earlier day it is recorded as a re-delivery, not ingested again), else read, counted
    and written to bronze as one batch, and recorded in the manifest. `known` is updated."""
    env, spark = lake.env, lake.spark
    sha256 = file_sha256(path)
    seen = known.get(sha256)
    if seen is not None and seen.delivery_date <= delivery_date:
        return _seen_before(lake, contract, delivery_date, path, sha256, seen, known)
    staging = None
    try:
        if contract.format in ("csv", "jsonl"):
            delivery, frame, counted = _read_text_delivery(spark, path, contract, env.landing)
        elif contract.format == "xlsx":
            staging = staging_dir(env, contract, sha256)
            delivery = stage_xlsx(path, contract, env.landing, staging, sha256)
            frame = _by_position(spark.read.parquet(str(staging)), contract, delivery.layout)
            counted = delivery.rows
        else:  # geojson: the strict decode names a wrong encoding's line and byte
            delivery, frame = read_geojson(
                spark, contract, inspect_delivery(path, contract, env.landing)
            )
            counted = delivery.rows
        if counted != delivery.rows:
            raise DeliveryError(
                f"{path}: {delivery.rows} data records counted in the file, but Spark's reader "
                f"parsed {counted}; nothing was written to bronze.{contract.source_id}"
            )
        result = _write_bronze(lake, contract, delivery_date, delivery, frame, arrived_at(path))
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    known[sha256] = Known(
        delivery_date, result["batch_id"], delivery.rows, frozenset({delivery_date})
    )
    return result


def _seen_before(
    lake: Lake,
    contract: SourceContract,
    delivery_date: dt.date,
    path: Path,
    sha256: str,
    seen: Known,
    known: dict[str, Known],
) -> dict:
    source_file = str(path.relative_to(lake.env.landing))
    summary = {"file": source_file, "batch_id": seen.batch_id, "skipped": True}
    if delivery_date in seen.days:
        return {**summary, "reason": "already ingested (same content hash)"}
    # The same extract again on a later day (departments re-send unchanged files): recorded as
    # delivered that day, nothing new for bronze or silver.
    record = {
        "file_sha256": sha256,
        "source_id": contract.source_id,
        "source_file": source_file,
        "delivery_date": delivery_date,
        "batch_id": seen.batch_id,
        "rows_delivered": seen.rows,
        "rows_bronze": 0,
        "ingested_at": ops.now(),
        "arrived_at": arrived_at(path),
        "kind": "redelivery",
    }
    ops.append(lake, ops.MANIFEST, [record])
    known[sha256] = replace(seen, days=seen.days | {delivery_date})
    return {
        **summary,
        "redelivery": True,
        "reason": f"re-delivery of the content first delivered on {seen.delivery_date}",
    }


def _write_bronze(
    lake: Lake,
    contract: SourceContract,
    delivery_date: dt.date,
    delivery: Delivery,
    frame: DataFrame,
    arrival: dt.datetime,
) -> dict:
    """Bronze rows and their manifest entry. The bronze commit carries the entry itself (commit
    metadata), so a manifest append lost to a crash is restored from it (repair_manifest)."""
    batch_id = batch_id_of(contract, delivery_date, delivery)
    ingested_at = ops.now()
    record = {
        "file_sha256": delivery.sha256,
        "source_id": contract.source_id,
        "source_file": delivery.source_file,
        "delivery_date": delivery_date,
        "batch_id": batch_id,
        "rows_delivered": delivery.rows,
        "rows_bronze": delivery.rows,
        "ingested_at": ingested_at,
        "arrived_at": arrival,
        "kind": "batch",
    }
    bronze = frame.select(
        *contract.column_names,
        EXTRA_COLUMNS,
        "_malformed_line",
        F.lit(delivery.source_file).alias("_source_file"),
        F.lit(batch_id).alias("_batch_id"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),  # aware: one instant
        F.lit(delivery_date).cast("date").alias("_delivery_date"),
        F.col("_row_number").cast("long").alias("_row_number"),
    )
    before = latest_version(lake.table_path("bronze", contract.source_id))
    lake.replace_batch(
        bronze, "bronze", contract.source_id, batch_id, metadata={"manifest": record}
    )
    bronze_rows = lake.rows_written("bronze", contract.source_id)
    if bronze_rows != delivery.rows:  # the reader's count was checked; this is Delta's own
        if before is None:
            shutil.rmtree(lake.table_path("bronze", contract.source_id), ignore_errors=True)
        else:
            lake.restore("bronze", contract.source_id, before)
        raise DeliveryError(
            f"{delivery.path}: {delivery.rows} data rows delivered but {bronze_rows} written to "
            f"bronze.{contract.source_id}; the write was undone"
        )
    ops.append(lake, ops.MANIFEST, [record])
    layout = delivery.layout.report() if delivery.layout else _NO_LAYOUT
    return {**{k: str(v) for k, v in record.items()}, **layout, "skipped": False}


_NO_LAYOUT = {"extra_columns": [], "absent_columns": []}


def manifest_rows(lake: Lake, source_id: str, delivery_date: dt.date | None = None) -> list[dict]:
    """The manifest's rows of one source (of one day), in arrival order."""
    relation = lake.scan("ops", ops.MANIFEST)
    if relation is None:
        return []
    where, parameters = "source_id = ?", [source_id]
    if delivery_date is not None:
        where, parameters = where + " AND delivery_date = ?", [*parameters, delivery_date]
    table = lake.arrow(
        f"SELECT * FROM {relation} WHERE {where} ORDER BY arrived_at, source_file, batch_id",
        parameters,
    )
    return table.to_pylist()


def manifest_contents(lake: Lake, source_id: str) -> dict[str, Known]:
    """Every content hash the manifest holds for a source: the first day and batch it came as."""
    known: dict[str, Known] = {}
    for row in sorted(manifest_rows(lake, source_id), key=lambda r: r["delivery_date"]):
        seen = known.get(row["file_sha256"])
        if seen is None:
            known[row["file_sha256"]] = Known(
                row["delivery_date"], row["batch_id"], row["rows_delivered"],
                frozenset({row["delivery_date"]}),
            )  # fmt: skip
        else:
            known[row["file_sha256"]] = replace(seen, days=seen.days | {row["delivery_date"]})
    return known


def repair_manifest(lake: Lake, contract: SourceContract) -> dict | None:
    """Record the batch of bronze's last commit if its manifest entry is missing (the process
    died between the two commits). Returns the entry restored, if any."""
    if not lake.exists("bronze", contract.source_id):
        return None
    entry = lake.metadata("bronze", contract.source_id).get("manifest")
    if not entry:
        return None
    recorded = {r["batch_id"] for r in manifest_rows(lake, contract.source_id)}
    if entry["batch_id"] in recorded:
        return None
    record = {
        **entry,
        "delivery_date": dt.date.fromisoformat(str(entry["delivery_date"])),
        "ingested_at": dt.datetime.fromisoformat(str(entry["ingested_at"])),
        "arrived_at": dt.datetime.fromisoformat(str(entry["arrived_at"])),
    }
    ops.append(lake, ops.MANIFEST, [record])
    return record
