"""CSV and JSON lines: the strict decode with the contract's encoding and the independent,
quote-aware record count (Python, one core) run while Spark's reader counts the records of each
split (the JVM); bronze must reconcile with that count. CR-only line ends are converted one line
for one line before the read."""

from __future__ import annotations

import codecs
import hashlib
import mmap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from citylake.config import SourceContract
from pipelines.delivery import (
    CHUNK,
    EXTRA_COLUMNS,
    EXTRA_TYPE,
    INGEST_REASONS,
    NOT_JSON_OBJECT,
    SPARK_CHARSETS,
    STRICT_JSON,
    Delivery,
    DeliveryError,
    Layout,
    by_position,
    check_header,
    layout_of,
    with_row_numbers,
)
from pipelines.readers import Read


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
    extras = F.lit(None).cast(EXTRA_TYPE)
    if layout.extra:
        values = F.from_json(
            "_line", T.StructType([T.StructField(k, T.StringType()) for k in layout.extra])
        )
        pairs = [x for k in layout.extra for x in (F.lit(k), values[k])]
        extras = F.map_filter(F.create_map(*pairs), lambda _, v: v.isNotNull())
        extras = F.when(F.size(extras) > 0, extras)
    return frame.withColumn(EXTRA_COLUMNS, extras).drop("_line")


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
    return delivery, by_position(numbered, contract, layout), counted


def read(spark, contract, path, *, landing, sha256, staging, bounds=None) -> Read:
    """A CSV or JSON lines delivery, its CR-only line ends converted first (one line for one)."""
    readable = stage_lf(path, staging) if is_cr_only(path) else path
    left_aside = {}
    if readable is not path:
        left_aside["line_ends"] = "CR (converted to LF, one line for one line)"
    delivery, frame, counted = _read_text_delivery(spark, readable, contract, landing, sha256, path)
    return Read(delivery, frame, counted, left_aside)
