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

import datetime as dt
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from citylake.config import Environment, SourceContract, settings
from citylake.divisions import city_bounds
from citylake.lake import Lake, latest_version
from pipelines import ops
from pipelines.delivery import (
    EXTRA_COLUMNS,
    INGEST_REASONS,
    Delivery,
    DeliveryError,
    file_sha256,
)
from pipelines.readers import readers

MANIFEST = "ingest_manifest"
LOG = logging.getLogger(__name__)


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
    try:
        read = readers()[contract.format](
            spark, contract, path, landing=env.landing, sha256=sha256, staging=staging,
            bounds=bounds,
        )  # fmt: skip
        delivery, frame, counted, left_aside = (
            read.delivery,
            read.frame,
            read.counted,
            read.left_aside,
        )
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
