"""Chunk writers for the delivery formats of the contracts: CSV, XLSX, JSON lines, GeoJSON.

A chunk is a dict of column name → object array of strings (None for empty), written in contract
order under the contract's headers. Every writer's output depends only on the rows it is given
(no clock, no random order), so a rerun is byte-identical.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from openpyxl import Workbook

from citylake.config import SourceContract

Chunk = dict[str, np.ndarray]


class ChunkWriter(Protocol):
    def write(self, chunk: Chunk) -> None: ...
    def close(self) -> None: ...


def typed(value: str | None, column_type: str) -> Any:
    """A value as JSON and Excel should hold it: integers and decimals as numbers."""
    if value is None:
        return None
    if column_type == "integer":
        return int(value)
    if column_type == "decimal":
        return float(value)
    return value


class CsvWriter:
    def __init__(self, path: Path, contract: SourceContract):
        self.contract = contract
        self.file = path.open("wb")
        self.encoding = contract.encoding
        self.options = pa_csv.WriteOptions(
            include_header=True, delimiter=contract.delimiter, quoting_style="needed"
        )

    def write(self, chunk: Chunk) -> None:
        table = pa.table(
            {
                column.header: pa.array(chunk[column.name], type=pa.string())
                for column in self.contract.columns
            }
        )
        buffer = io.BytesIO()
        pa_csv.write_csv(table, buffer, write_options=self.options)
        text = buffer.getvalue().decode("utf-8")
        self.file.write(text.encode(self.encoding))
        # The header (and a UTF-8 byte-order mark) belongs at the top of the file only.
        self.options = pa_csv.WriteOptions(
            include_header=False, delimiter=self.contract.delimiter, quoting_style="needed"
        )
        if self.encoding == "utf-8-sig":
            self.encoding = "utf-8"

    def close(self) -> None:
        self.file.close()


def _records(chunk: Chunk, columns: list) -> list[dict[str, Any]]:
    values = [chunk[c.name] for c in columns]
    return [
        {c.header: typed(v, c.type) for c, v in zip(columns, row, strict=True)}
        for row in zip(*values, strict=True)
    ]


class JsonLinesWriter:
    def __init__(self, path: Path, contract: SourceContract):
        self.contract = contract
        self.file = path.open("w", encoding=contract.encoding, newline="\n")

    def write(self, chunk: Chunk) -> None:
        records = _records(chunk, self.contract.columns)
        self.file.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

    def close(self) -> None:
        self.file.close()


class GeoJsonWriter:
    """A FeatureCollection; the geometry column is each feature's geometry, the rest properties."""

    def __init__(self, path: Path, contract: SourceContract):
        self.contract = contract
        self.geometry = next(c.name for c in contract.columns if c.type == "geometry")
        self.properties = [c for c in contract.columns if c.type != "geometry"]
        self.file = path.open("w", encoding=contract.encoding, newline="\n")
        self.file.write('{"type": "FeatureCollection", "features": [\n')
        self.first = True

    def write(self, chunk: Chunk) -> None:
        records = _records(chunk, self.properties)
        for record, geometry in zip(records, chunk[self.geometry], strict=True):
            feature = {"type": "Feature", "properties": record, "geometry": geometry}
            self.file.write(("" if self.first else ",\n") + json.dumps(feature, ensure_ascii=False))
            self.first = False

    def close(self) -> None:
        self.file.write("\n]}\n")
        self.file.close()


class XlsxWriter:
    """One sheet, streamed with openpyxl's write-only mode; timestamps pinned for reproducibility."""

    def __init__(self, path: Path, contract: SourceContract, delivery_date: dt.date):
        self.path, self.contract, self.delivery_date = path, contract, delivery_date
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet(title=contract.sheet or contract.title[:31])
        self.sheet.append(contract.headers)

    def write(self, chunk: Chunk) -> None:
        for record in _records(chunk, self.contract.columns):
            self.sheet.append(list(record.values()))

    def close(self) -> None:
        moment = dt.datetime.combine(self.delivery_date, dt.time())
        self.workbook.properties.creator = "CityLake sample"
        self.workbook.properties.created = moment
        self.workbook.save(self.path)
        _pin_zip_timestamps(self.path, moment)


def _pin_zip_timestamps(path: Path, moment: dt.datetime) -> None:
    """openpyxl stamps the save time into docProps/core.xml and every zip entry; pin both."""
    iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>" + iso.encode(), data)
            pinned = zipfile.ZipInfo(info.filename, date_time=moment.timetuple()[:6])
            pinned.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(pinned, data)


def open_writer(path: Path, contract: SourceContract, delivery_date: dt.date) -> ChunkWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    if contract.format == "csv":
        return CsvWriter(path, contract)
    if contract.format == "jsonl":
        return JsonLinesWriter(path, contract)
    if contract.format == "geojson":
        return GeoJsonWriter(path, contract)
    return XlsxWriter(path, contract, delivery_date)
