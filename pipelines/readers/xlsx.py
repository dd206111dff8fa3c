"""XLSX: the contract's sheet streamed (openpyxl, read-only) into staging Parquet, the header found
where it is (title rows above it reported), row numbers as Excel shows them, a formula saved
without its value its own reason, the other sheets with data listed."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from citylake.config import SourceContract
from pipelines.delivery import (
    CHUNK,
    INGEST_REASONS,
    Delivery,
    DeliveryError,
    by_position,
    layout_of,
)
from pipelines.readers import Read

XLSX_STAGING_ROWS = 50_000  # rows per Parquet row group written while streaming a sheet


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


def read(spark, contract, path, *, landing, sha256, staging, bounds=None) -> Read:
    """The contract's sheet, staged as Parquet and read back by position."""
    delivery, left_aside = stage_xlsx(path, contract, landing, staging, sha256)
    frame = by_position(spark.read.parquet(str(staging)), contract, delivery.layout)
    return Read(delivery, frame, delivery.rows, left_aside)
