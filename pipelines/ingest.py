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
import logging
import mmap
import os
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import shapely
import shapely.errors
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from shapely.geometry import shape

from citylake.config import Environment, SourceContract, settings
from citylake.divisions import city_bounds
from citylake.errors import CityLakeError
from citylake.lake import Lake, latest_version
from pipelines import ops

MANIFEST = "ingest_manifest"
CHUNK = 1 << 22
XLSX_STAGING_ROWS = 50_000  # rows per Parquet row group written while streaming a sheet
BOUNDS_MARGIN_DEGREES = 0.01  # about 1 km: the division boundaries' own precision
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
_EXTRA_TYPE = "map<string,string>"
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


def delivery_dir(env: Environment, contract: SourceContract, delivery_date: dt.date) -> Path:
    return env.landing / contract.department / contract.source_name / delivery_date.isoformat()


@dataclass(frozen=True)
class Refusal:
    """An entry of a day folder that is not a delivery: never opened, recorded and reported."""

    source_file: str  # relative to the landing root, as the department placed it
    code: str  # symlink | hidden | folder | not_a_file | outside
    reason: str


@dataclass(frozen=True)
class DayFolder:
    files: list[Path]  # the deliveries, in the order they arrived
    refused: list[Refusal]


def scan_day(env: Environment, contract: SourceContract, delivery_date: dt.date) -> DayFolder:
    """The landing zone is a trust boundary: a delivery is a regular file, under a visible name,
    directly in its day folder, and that folder lies inside the landing root (no link on the way).
    Everything else is refused without being opened: a symbolic link (wherever it points), a
    hidden file (a name starting with a dot: an upload still in progress, or a system file), a
    folder, a device or pipe; a day folder reached through a link refuses all it holds.

    Files are ordered by arrival (modification time, then name): a correction delivered later that
    day is applied after what it corrects. A daily source with nothing delivered is an error (the
    department missed a delivery); a weekly or monthly source simply has no delivery on most days.
    """
    folder = delivery_dir(env, contract, delivery_date)
    relative = folder.relative_to(env.landing)
    files: list[Path] = []
    refused: list[Refusal] = []
    if os.path.lexists(folder):
        real = folder.resolve()
        if real != env.landing.resolve() / relative:
            refused.append(
                Refusal(
                    str(relative),
                    "outside",
                    f"the day folder resolves to {real}, not to a folder of the landing zone "
                    "(a symbolic link on the way); nothing in it is taken",
                )
            )
        elif real.is_dir():
            with os.scandir(folder) as entries:
                for entry in entries:
                    refusal = _refusal(entry, relative / entry.name)
                    if refusal is None:
                        files.append(Path(entry.path))
                    else:
                        refused.append(refusal)
    files.sort(key=lambda p: (p.stat(follow_symlinks=False).st_mtime_ns, p.name))
    if not files and not refused and contract.frequency == "daily":
        raise DeliveryError(
            f"{contract.source_id}: no file delivered for {delivery_date} in {folder} "
            f"({contract.department_name} delivers {contract.frequency})"
        )
    return DayFolder(files, sorted(refused, key=lambda r: r.source_file))


def _refusal(entry: os.DirEntry, relative: Path) -> Refusal | None:
    name = str(relative)
    if entry.is_symlink():
        target = os.readlink(entry.path)
        return Refusal(
            name, "symlink", f"a symbolic link (to {target}); only files are taken, never links"
        )
    if entry.name.startswith("."):
        return Refusal(
            name,
            "hidden",
            "a hidden file (its name starts with a dot: an unfinished upload or a system file); "
            "deliver it under a name without the dot",
        )
    if entry.is_dir(follow_symlinks=False):
        return Refusal(name, "folder", "a folder inside a day folder; deliver files only")
    if not entry.is_file(follow_symlinks=False):
        return Refusal(name, "not_a_file", "not a regular file (a device, pipe or socket)")
    return None


def find_deliveries(
    env: Environment, contract: SourceContract, delivery_date: dt.date
) -> list[Path]:
    """The files delivered for one source on one date, in arrival order (see scan_day)."""
    return scan_day(env, contract, delivery_date).files


def record_refusals(
    lake: Lake, contract: SourceContract, delivery_date: dt.date, refused: list[Refusal]
) -> list[dict]:
    """Record refusals not recorded for that day yet; returns every refusal of the day as a
    summary (a rerun reports them again, the table holds each once)."""
    if not refused:
        return []
    recorded: set[tuple[str, str]] = set()
    relation = lake.scan("ops", ops.LANDING_REFUSALS)
    if relation is not None:
        rows = lake.arrow(
            f"SELECT source_file, reason_code FROM {relation} "
            "WHERE source_id = ? AND delivery_date = ?",
            [contract.source_id, delivery_date],
        ).to_pylist()
        recorded = {(r["source_file"], r["reason_code"]) for r in rows}
    found_at = ops.now()
    ops.append(
        lake,
        ops.LANDING_REFUSALS,
        [
            {
                "source_id": contract.source_id,
                "delivery_date": delivery_date,
                "source_file": r.source_file,
                "reason_code": r.code,
                "reason": r.reason,
                "found_at": found_at,
            }
            for r in refused
            if (r.source_file, r.code) not in recorded
        ],
    )
    return [
        {"file": r.source_file, "refused": r.code, "reason": r.reason, "skipped": True}
        for r in refused
    ]


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


# ----------------------------------------------------------------------------- text files


class _RecordCounter:
    """Counts CSV records on bytes, as Spark's reader sees them (RFC 4180).

    A newline ends a record unless it lies inside a quoted field. A quote opens a quoted field only
    at the start of a field (after the delimiter or at the start of a line); anywhere else it is a
    plain character (a stray quote in `张"三` does not open anything, as in Spark's and Python's
    readers); inside a quoted field a doubled quote is a quote. Blank lines between records are no
    records (Spark skips them). Neither '\\n', '\\r', '"' nor an ASCII delimiter ever occurs inside a
    UTF-8, GBK or GB18030 multi-byte character, so bytes suffice. Lines without a quote (the common
    case) are counted in C; only quoted ones are walked, a find() per field.

    A carriage return that ends no line (a lone CR outside quotes) would split the record in
    Spark's line reader but not here: it is reported by line (`lone_cr_line`) and the file fails.
    """

    def __init__(self, quote_aware: bool, delimiter: bytes = b","):
        self.quote_aware = quote_aware
        self.delimiter = delimiter
        self.records = 0
        self.in_quote = False
        self.pending = b""  # the unfinished last line
        self.line = 1  # the file line the next complete line starts on
        self.lone_cr_line: int | None = None

    def feed(self, chunk: bytes) -> None:
        data = self.pending + chunk
        end = data.rfind(b"\n")
        if end < 0:
            self.pending = data
            return
        body = data[:end]
        lines = body.split(b"\n")
        self.pending = data[end + 1 :]
        fast = not self.in_quote and (not self.quote_aware or b'"' not in body)
        if fast:
            if self.lone_cr_line is None and body.count(b"\r") != sum(
                1 for line in lines if line.endswith(b"\r")
            ):
                self._find_lone_cr(lines)
            self.records += len(lines) - lines.count(b"") - lines.count(b"\r")
        else:
            for number, line in enumerate(lines, start=self.line):
                started_in_quote = self.in_quote
                if not self.in_quote and line in (b"", b"\r"):
                    continue
                self.in_quote = self._scan(line, self.in_quote)
                if (
                    self.lone_cr_line is None
                    and not started_in_quote
                    and not self.in_quote
                    and b'"' not in line
                    and b"\r" in line[:-1]
                ):
                    self.lone_cr_line = number
                if not self.in_quote:
                    self.records += 1
        self.line += len(lines)

    def _find_lone_cr(self, lines: list[bytes]) -> None:
        for number, line in enumerate(lines, start=self.line):
            if b"\r" in line[:-1]:
                self.lone_cr_line = number
                return

    def _scan(self, line: bytes, in_quote: bool) -> bool:
        """Whether a quoted field is still open at the end of the line."""
        delimiter, i = self.delimiter, 0
        while True:
            if in_quote:
                j = line.find(b'"', i)
                if j < 0:
                    return True
                if line[j + 1 : j + 2] == b'"':  # a doubled quote inside the field
                    i = j + 2
                    continue
                in_quote = False
                i = line.find(delimiter, j + 1)  # text after the closing quote is literal
                if i < 0:
                    return False
                i += len(delimiter)
            if line[i : i + 1] == b'"':  # at the start of a field
                in_quote, i = True, i + 1
                continue
            i = line.find(delimiter, i)
            if i < 0:
                return False
            i += len(delimiter)

    def close(self) -> int:
        # A last line without a newline is a record; so is a quote left open at the end of the
        # file (a truncated delivery: Spark returns it as one malformed record).
        last = self.pending
        outside_quotes = not self.in_quote and b'"' not in last
        if self.lone_cr_line is None and outside_quotes and b"\r" in last.rstrip(b"\r"):
            self.lone_cr_line = self.line
        if self.in_quote or self.pending.strip(b"\r"):
            self.records += 1
        return self.records


def _contains(path: Path, needle: bytes) -> bool:
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(needle) >= 0


def is_cr_only(path: Path) -> bool:
    """A text file whose lines end in a bare CR (classic Mac OS, old Excel "CSV (Macintosh)")."""
    with path.open("rb") as handle:
        head = handle.read(CHUNK)
    return b"\r" in head and b"\n" not in head and not _contains(path, b"\n")


def stage_lf(path: Path, staging: Path) -> Path:
    """A copy of a CR-only file with LF line ends (one line for one line, so row numbers hold)."""
    staging.mkdir(parents=True, exist_ok=True)
    target = staging / f"lf{path.suffix}"
    with path.open("rb") as source, target.open("wb") as copy:
        while chunk := source.read(CHUNK):
            copy.write(chunk.replace(b"\r", b"\n"))
    return target


def inspect_delivery(
    path: Path,
    contract: SourceContract,
    landing_root: Path,
    *,
    sha256: str | None = None,
    delivered: Path | None = None,
) -> Delivery:
    """Strictly decode and count one text file (and hash it, unless its sha256 is given); match
    its header against the contract. `delivered` is the file as it sits in the landing zone when
    `path` is a staged copy of it (messages and lineage name the delivered file)."""
    shown = delivered or path
    decoder = codecs.getincrementaldecoder(contract.encoding)(errors="strict")
    digest = hashlib.sha256() if sha256 is None else None
    counter = _RecordCounter(
        quote_aware=contract.format == "csv", delimiter=contract.delimiter.encode()
    )
    line, offset, first_line = 1, 0, None
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                if digest is not None:
                    digest.update(chunk)
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    bad_line = line + chunk[: exc.start].count(b"\n")
                    raise DeliveryError(
                        f"{shown}: line {bad_line}, byte {offset + exc.start}: not valid "
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
        raise DeliveryError(f"{shown}: cannot read the delivered file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:  # the file ends inside a multi-byte character
        raise DeliveryError(
            f"{shown}: line {line}: the file ends inside a {contract.encoding} character "
            f"(truncated?); the contract conf/sources/{contract.source_id}.yaml says "
            f"encoding: {contract.encoding}"
        ) from exc
    source_file = str(shown.relative_to(landing_root))
    sha256 = sha256 or digest.hexdigest()
    if offset == 0:
        raise DeliveryError(f"{shown}: the file is empty (0 bytes); expected a header line")
    records = counter.close()
    if counter.lone_cr_line is not None:
        raise DeliveryError(
            f"{shown}: line {counter.lone_cr_line}: a carriage return (CR) inside a line, outside "
            "any quoted field; readers split the record there. Deliver with LF or CRLF line "
            "ends, and quote a field that holds a line break"
        )
    if contract.format == "csv":
        if not (first_line or "").strip("\ufeff\r "):
            raise DeliveryError(f"{shown}: line 1 is blank; expected the header line")
        layout = check_header(shown, contract, first_line)
        return Delivery(shown, source_file, sha256, records - 1, layout)
    if contract.format == "geojson":  # features are counted by the reader, not by lines
        return Delivery(shown, source_file, sha256, 0)
    return Delivery(shown, source_file, sha256, records)


def _peek_header(path: Path, contract: SourceContract, shown: Path) -> Layout:
    """The CSV header alone (the reader's schema needs it); inspect_delivery explains failures."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16).split(b"\n", 1)[0]
    try:
        first_line = head.decode(contract.encoding)
    except UnicodeDecodeError:
        inspect_delivery(path, contract, shown.parent, delivered=shown)  # names line and byte
        raise
    if not first_line.strip("\ufeff\r "):
        raise DeliveryError(
            f"{shown}: the file is empty (0 bytes)"
            if path.stat().st_size == 0
            else f"{shown}: line 1 is blank; expected the header line"
        )
    return check_header(shown, contract, first_line)


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
    keys are matched against the contract once counted, see jsonl_layout).

    Strict JSON (RFC 8259): a line that is no JSON object (single quotes, a bare value, an array,
    a cut line) gets `_row.not_json_object`; an object that repeats a key gets
    `_row.duplicate_json_key` (which of its values was meant is unknown). Either way the line is
    kept as _malformed_line and quarantined with that reason."""
    charset = SPARK_CHARSETS.get(contract.encoding, contract.encoding)
    line = F.ltrim(F.decode(F.col("value").cast("binary"), charset), F.lit("\ufeff"))
    lines = spark.read.text(str(path)).select(line.alias("_line")).where(F.col("_line") != "")
    schema = T.StructType(
        [T.StructField(c.header, T.StringType()) for c in contract.columns]
        + [T.StructField("_not_json", T.StringType())]
    )
    parsed = F.from_json("_line", schema, STRICT_JSON)
    keys = F.json_object_keys("_line")
    not_object = parsed["_not_json"].isNotNull() | keys.isNull()
    repeated = ~not_object & (F.size(keys) != F.size(F.array_distinct(keys)))
    reasons = F.array_compact(
        F.array(
            F.when(not_object, F.lit(NOT_JSON_OBJECT)),
            F.when(repeated, F.lit("_row.duplicate_json_key")),
        )
    )
    return lines.select(
        *[F.when(~not_object, parsed[c.header]).alias(c.name) for c in contract.columns],
        F.when(not_object | repeated, F.col("_line")).alias("_malformed_line"),
        F.when(F.size(reasons) > 0, reasons).alias(INGEST_REASONS),
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


def _read_text_delivery(
    spark: SparkSession,
    path: Path,
    contract: SourceContract,
    landing_root: Path,
    sha256: str,
    delivered: Path,
) -> tuple[Delivery, DataFrame, int]:
    """CSV / JSON lines: the strict decode and the count (Python, one core) run while Spark's
    first pass counts the records of each split (the JVM); neither waits for the other.
    `path` is what is read: the delivered file, or its LF copy when it came with CR line ends.
    Returns the delivery, the numbered frame and how many records Spark's reader found."""
    layout = _peek_header(path, contract, delivered) if contract.format == "csv" else None
    with ThreadPoolExecutor(max_workers=1) as pool:
        inspected = pool.submit(
            inspect_delivery, path, contract, landing_root, sha256=sha256, delivered=delivered
        )
        try:
            if layout is not None:
                numbered, splits = with_row_numbers(read_csv(spark, path, contract, layout))
            else:
                frame = read_jsonl(spark, path, contract)
                # the key sets the file's objects use, found in the same pass
                keys = F.collect_set(F.array_sort(F.array_distinct(F.json_object_keys("_line"))))
                numbered, splits = with_row_numbers(frame, keys=keys)
        finally:
            delivery = inspected.result()  # a bad delivery's own message comes first
    counted = sum(split["n"] for split in splits)
    if layout is None:
        layout = jsonl_layout(delivered, contract, splits)
        return replace(delivery, layout=layout), with_json_extras(numbered, layout), counted
    numbered = numbered.withColumn(INGEST_REASONS, F.lit(None).cast("array<string>"))
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


HEADER_SEARCH_ROWS = 20  # title rows (a sheet's heading, a unit line) may stand above the header


def _sheet(workbook, path: Path, contract: SourceContract):
    if not workbook.worksheets:
        raise DeliveryError(f"{path}: the workbook has no sheet")
    if contract.sheet is None:
        return workbook.worksheets[0]
    if contract.sheet not in workbook.sheetnames:
        raise DeliveryError(
            f"{path}: no sheet named '{contract.sheet}' (the contract "
            f"conf/sources/{contract.source_id}.yaml says sheet: {contract.sheet}); the workbook "
            f"has {workbook.sheetnames}"
        )
    return workbook[contract.sheet]


def _find_header(rows, path: Path, contract: SourceContract, title: str):
    """(header texts, its row number, rows above it that held something): the first row among
    the first HEADER_SEARCH_ROWS that holds every required header of the contract."""
    required = {c.header for c in contract.columns if c.required}
    above: list[int] = []
    first_seen = None
    for row_number, values in enumerate(rows, start=1):
        texts = [(cell_text(v) or "").strip() for v in values]
        if not any(texts):
            continue
        if required <= set(texts):
            while texts and not texts[-1]:
                texts.pop()
            return texts, row_number, above
        first_seen = first_seen or (row_number, texts)
        above.append(row_number)
        if len(above) >= HEADER_SEARCH_ROWS:
            break
    if first_seen is None:
        raise DeliveryError(f"{path}: sheet '{title}' is empty; expected a header row")
    row_number, texts = first_seen  # fails naming the required columns it lacks
    layout_of(path, contract, texts, f"sheet '{title}', row {row_number} (header)")
    raise DeliveryError(f"{path}: sheet '{title}': no header row found")  # pragma: no cover


def _has_formulas(path: Path, sheet) -> bool:
    """Whether the sheet's XML holds a formula element (<f>), streamed from the archive."""
    member = getattr(sheet, "_worksheet_path", None)
    if member is None:
        return True
    with zipfile.ZipFile(path) as archive, archive.open(member.lstrip("/")) as xml:
        tail = b""
        while chunk := xml.read(CHUNK):
            data = tail + chunk
            if b"<f>" in data or b"<f " in data or b":f>" in data or b":f " in data:
                return True
            tail = data[-8:]
    return False


def _other_sheets_with_data(workbook, chosen) -> list[str]:
    return [
        sheet.title
        for sheet in workbook.worksheets
        if sheet is not chosen
        and any(v not in (None, "") for row in sheet.iter_rows(values_only=True) for v in row)
    ]


def stage_xlsx(
    path: Path, contract: SourceContract, landing_root: Path, staging: Path, sha256: str
) -> tuple[Delivery, dict]:
    """Stream the contract's sheet (openpyxl, read-only) into staging Parquet: text fields _f0..
    by position, _row_number (the sheet's own row, as Excel shows it), _malformed_line (a row wider
    than its header), _ingest_reasons (`<column>.formula_without_value` for a formula cell saved
    without its result: the value the department saw is not in the file).

    The header is the first row holding every required header (title rows above it are reported).
    Returns the delivery and what the reader left aside: other sheets with data, rows above the
    header."""
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as exc:
        raise DeliveryError(
            f"{path}: not a readable XLSX workbook ({exc}); the contract "
            f"conf/sources/{contract.source_id}.yaml says format: xlsx"
        ) from exc
    formulas = None
    try:
        sheet = _sheet(workbook, path, contract)
        found, header_row, above = _find_header(
            sheet.iter_rows(values_only=True), path, contract, sheet.title
        )
        layout = layout_of(
            path, contract, found, f"sheet '{sheet.title}', row {header_row} (header)"
        )
        names = {
            i: c.name for c in contract.columns if (i := layout.positions.get(c.name)) is not None
        }
        rows = sheet.iter_rows(min_row=header_row + 1, values_only=True)
        formula_rows = None
        if _has_formulas(path, sheet):  # formula text beside the cached values
            formulas = load_workbook(path, read_only=True, data_only=False)
            formula_rows = formulas[sheet.title].iter_rows(min_row=header_row + 1, values_only=True)
        width = len(found)
        schema = pa.schema(
            [pa.field(f"_f{i}", pa.string()) for i in range(width)]
            + [
                pa.field("_malformed_line", pa.string()),
                pa.field(INGEST_REASONS, pa.list_(pa.string())),
                pa.field("_row_number", pa.int64()),
            ]
        )
        staging.mkdir(parents=True, exist_ok=True)
        count = 0
        buffer: list[list] = [[] for _ in range(width + 3)]
        with pq.ParquetWriter(staging / "rows.parquet", schema) as writer:
            for row_number, values in enumerate(rows, start=header_row + 1):
                written = next(formula_rows, ()) if formula_rows is not None else ()
                texts = [cell_text(v) for v in values]
                unsaved = [
                    f"{names[i]}.formula_without_value"
                    for i, (value, formula) in enumerate(zip(values, written, strict=False))
                    if i in names  # a column the contract does not know only rides along
                    and value is None
                    and isinstance(formula, str)
                    and formula.startswith("=")
                ]
                if all(t is None or t == "" for t in texts) and not unsaved:
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
                buffer[width + 1].append(sorted(set(unsaved)) or None)
                buffer[width + 2].append(row_number)
                count += 1
                if len(buffer[width + 2]) >= XLSX_STAGING_ROWS:
                    writer.write_batch(pa.record_batch(buffer, schema=schema))
                    buffer = [[] for _ in range(width + 3)]
            writer.write_batch(pa.record_batch(buffer, schema=schema))
        left_aside = {
            "sheet": sheet.title,
            "header_row": header_row,
            "rows_above_header": above,
            "ignored_sheets": _other_sheets_with_data(workbook, sheet),
        }
    finally:
        workbook.close()
        if formulas is not None:
            formulas.close()
    delivery = Delivery(path, str(path.relative_to(landing_root)), sha256, count, layout)
    return delivery, left_aside


# ----------------------------------------------------------------------------- GeoJSON

_FEATURE = "struct<type: string, properties: map<string, string>, geometry: string>"


def geometry_reasons(
    path: Path, contract: SourceContract, bounds: tuple[float, float, float, float]
) -> dict[int, list[str]]:
    """Reason codes of the features (by 0-based position) whose geometry is no valid polygon
    (OGC simple features, as GEOS judges: a ring that crosses itself or another ring,
    `<column>.self_intersection`) or reaches outside the city's bounds (its divisions' bounding
    box, `<column>.outside_city`). A geometry whose structure is wrong (not a Polygon or
    MultiPolygon, a ring not closed, too few positions) is silver's `malformed_geometry`."""
    column = next((c.name for c in contract.columns if c.type == "geometry"), None)
    if column is None:
        return {}
    collection = json.loads(path.read_text(encoding=contract.encoding))
    min_x, min_y, max_x, max_y = bounds
    margin = BOUNDS_MARGIN_DEGREES
    reasons: dict[int, list[str]] = {}
    for position, feature in enumerate(collection.get("features") or []):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in (
            "Polygon",
            "MultiPolygon",
        ):
            continue
        try:
            polygon = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.ShapelyError):
            continue  # malformed structure: silver's rule names it
        found = []
        if not polygon.is_valid:
            found.append(f"{column}.self_intersection")
        x0, y0, x1, y1 = polygon.bounds
        if x0 < min_x - margin or y0 < min_y - margin or x1 > max_x + margin or y1 > max_y + margin:
            found.append(f"{column}.outside_city")
        if found:
            reasons[position] = found
    return reasons


def read_geojson(
    spark: SparkSession,
    contract: SourceContract,
    delivery: Delivery,
    bounds: tuple[float, float, float, float],
) -> tuple[Delivery, DataFrame]:
    """A FeatureCollection: one bronze row per feature, properties matched to the contract's
    headers by name, the geometry member kept as its JSON text (Spark's JSON reader hands a
    nested object to a string field as its text); the reasons of geometry_reasons."""
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
    invalid = geometry_reasons(delivery.path, contract, bounds)
    features_frame = collection.select(F.posexplode("features").alias("position", "feature"))
    if invalid:
        found = spark.createDataFrame(
            list(invalid.items()), "position int, _geometry_reasons array<string>"
        )
        features_frame = features_frame.join(F.broadcast(found), "position", "left")
    else:
        features_frame = features_frame.withColumn(
            "_geometry_reasons", F.lit(None).cast("array<string>")
        )
    frame = features_frame.select(
        *columns,
        F.when(F.size(extras) > 0, extras).alias(EXTRA_COLUMNS),
        F.when(
            feature.isNull() | (F.coalesce(feature["type"], F.lit("")) != "Feature"),
            F.coalesce(F.to_json(feature), F.lit("null")),
        ).alias("_malformed_line"),
        F.col("_geometry_reasons").alias(INGEST_REASONS),
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


def ingest_source(
    lake: Lake, contract: SourceContract, delivery_date: dt.date
) -> tuple[list[dict], list[dict]]:
    """Ingest every file delivered for one source on one date, in the order the files arrived;
    returns one summary per file, and one per entry of the day folder that was refused."""
    repair_manifest(lake, contract)
    day = scan_day(lake.env, contract, delivery_date)
    refused = record_refusals(lake, contract, delivery_date, day.refused)
    known = manifest_contents(lake, contract.source_id)
    _, city, _ = settings()
    bounds = city_bounds(tuple(city.division_codes))
    files = [ingest_file(lake, contract, delivery_date, path, known, bounds) for path in day.files]
    return files, refused


def ingest_file(
    lake: Lake,
    contract: SourceContract,
    delivery_date: dt.date,
    path: Path,
    known: dict[str, Known],
    bounds: tuple[float, float, float, float],
) -> dict:
    """One file: skipped when its content is already recorded for this day or an earlier one
    (on an earlier day it is recorded as a re-delivery, not ingested again), else read, counted
    and written to bronze as one batch, and recorded in the manifest. `known` is updated.

    All or nothing: every check runs before the bronze commit, the bronze commit carries the
    manifest entry (see _write_bronze), so a failure leaves bronze and the manifest as they were."""
    env, spark = lake.env, lake.spark
    sha256 = file_sha256(path)
    seen = known.get(sha256)
    if seen is not None and seen.delivery_date <= delivery_date:
        return _seen_before(lake, contract, delivery_date, path, sha256, seen, known)
    staging = staging_dir(env, contract, sha256)
    left_aside: dict = {}
    try:
        if contract.format in ("csv", "jsonl"):
            readable = stage_lf(path, staging) if is_cr_only(path) else path
            if readable is not path:
                left_aside["line_ends"] = "CR (converted to LF, one line for one line)"
            delivery, frame, counted = _read_text_delivery(
                spark, readable, contract, env.landing, sha256, path
            )
        elif contract.format == "xlsx":
            delivery, left_aside = stage_xlsx(path, contract, env.landing, staging, sha256)
            frame = _by_position(spark.read.parquet(str(staging)), contract, delivery.layout)
            counted = delivery.rows
        else:  # geojson: the strict decode names a wrong encoding's line and byte
            inspected = inspect_delivery(path, contract, env.landing, sha256=sha256)
            delivery, frame = read_geojson(spark, contract, inspected, bounds)
            counted = delivery.rows
        if counted != delivery.rows:
            raise DeliveryError(
                f"{path}: {delivery.rows} data records counted in the file (RFC 4180 quoting), "
                f"but Spark's reader parsed {counted}: the records cannot be delimited "
                f"unambiguously; nothing was written to bronze.{contract.source_id}"
            )
        result = _write_bronze(lake, contract, delivery_date, delivery, frame, arrived_at(path))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    known[sha256] = Known(
        delivery_date, result["batch_id"], delivery.rows, frozenset({delivery_date})
    )
    if left_aside.get("ignored_sheets"):
        LOG.warning("%s: sheets not taken: %s", path, left_aside["ignored_sheets"])
    return {**result, **left_aside}


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
        F.col(INGEST_REASONS).cast("array<string>").alias(INGEST_REASONS),
        F.lit(delivery.source_file).alias("_source_file"),
        F.lit(batch_id).alias("_batch_id"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),  # aware: one instant
        F.lit(delivery_date).cast("date").alias("_delivery_date"),
        F.col("_row_number").cast("long").alias("_row_number"),
    )
    before = latest_version(lake.table_path("bronze", contract.source_id))
    bronze_rows = lake.replace_batch(
        bronze, "bronze", contract.source_id, batch_id, metadata={"manifest": record}
    )
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
    summary = {k: str(v) for k, v in record.items()}
    return {"file": delivery.source_file, **summary, **layout, "skipped": False}


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
