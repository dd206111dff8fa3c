"""The ops.* bookkeeping tables: one Arrow schema each, and the one way a row of each is written.

    ingest_manifest   one row per delivered file and day: its content hash, batch, counts, when it
                      arrived in the landing zone and what became of it (a new batch, or a
                      re-delivery of content already ingested)
    silver_ledger     one row per batch silver holds, in the order applied, with the Delta
                      version of the silver table before and after (pipelines/ledger.py)
    quality_results   one row per expectation per validation (quality/runner.py)
    run_log           one row per failed or retried task (citylake/orchestration/policy.py)
    integrity         one row per cross-library link per publication (base_libraries/integrity.py)
    landing_refusals  one row per entry of a day folder that was not taken (a symbolic link, a
                      hidden file, a folder, anything resolving outside the landing zone), why
    access_log        one row per request to the data service, granted or denied, carried from
                      the service's state (pipelines/access_log.py); ID numbers in paths masked

Only delta-rs writes these tables (Lake.append_rows): a commit of a few rows costs some 50 ms.
Timestamps are instants (UTC); dates are the city's calendar days.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from citylake.lake import Lake

MANIFEST = "ingest_manifest"
LEDGER = "silver_ledger"
QUALITY_RESULTS = "quality_results"
RUN_LOG = "run_log"
INTEGRITY = "integrity"
LANDING_REFUSALS = "landing_refusals"
ACCESS_LOG = "access_log"

_INSTANT = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    ACCESS_LOG: pa.schema(
        [
            ("id", pa.int64()),
            ("at", _INSTANT),
            ("consumer", pa.string()),
            ("token_id", pa.string()),
            ("method", pa.string()),
            ("path", pa.string()),
            ("service", pa.string()),
            ("resource", pa.string()),
            ("grant_id", pa.string()),
            ("purpose", pa.string()),
            ("fields", pa.string()),  # JSON list
            ("clear_fields", pa.string()),  # JSON list: personal fields returned in clear
            ("rows_returned", pa.int64()),
            ("outcome", pa.string()),  # granted / denied / refused / error
            ("status", pa.int64()),
            ("reason", pa.string()),
            ("client", pa.string()),
        ]
    ),
    MANIFEST: pa.schema(
        [
            ("file_sha256", pa.string()),
            ("source_id", pa.string()),
            ("source_file", pa.string()),
            ("delivery_date", pa.date32()),
            ("batch_id", pa.string()),
            ("rows_delivered", pa.int64()),
            ("rows_bronze", pa.int64()),
            ("ingested_at", _INSTANT),
            # when the file reached the landing zone (its modification time): the order in
            # which a day's files are applied, whatever their names
            ("arrived_at", _INSTANT),
            # "batch": a new batch in bronze; "redelivery": content already ingested on an
            # earlier day, recorded and not ingested again (batch_id names the earlier batch)
            ("kind", pa.string()),
        ]
    ),
    LEDGER: pa.schema(
        [
            ("source_id", pa.string()),
            ("silver_table", pa.string()),
            ("batch_id", pa.string()),
            ("delivery_date", pa.date32()),
            ("arrived_at", _INSTANT),
            ("version_before", pa.int64()),  # -1: the table did not exist
            ("version_after", pa.int64()),
            ("rows_delivered", pa.int64()),
            ("rows_accepted", pa.int64()),
            ("rows_quarantined", pa.int64()),
            ("rows_inserted", pa.int64()),
            ("rows_updated", pa.int64()),
            ("applied_at", _INSTANT),
        ]
    ),
    QUALITY_RESULTS: pa.schema(
        [
            ("run_id", pa.string()),
            ("checked_at", _INSTANT),
            ("layer", pa.string()),
            ("table_name", pa.string()),
            ("expectation", pa.string()),
            ("column_name", pa.string()),
            ("severity", pa.string()),
            ("success", pa.bool_()),
            ("element_count", pa.int64()),
            ("unexpected_count", pa.int64()),
            ("unexpected_percent", pa.float64()),
            ("unexpected_examples", pa.string()),
            ("table_version", pa.int64()),
            ("suite_name", pa.string()),
            ("expectation_args", pa.string()),
            ("logical_date", pa.date32()),
            # the batches a bronze validation covered (comma-separated), else null
            ("batch_ids", pa.string()),
        ]
    ),
    RUN_LOG: pa.schema(
        [
            ("logged_at", _INSTANT),
            ("dag_id", pa.string()),
            ("task_id", pa.string()),
            ("run_id", pa.string()),
            ("logical_date", pa.string()),
            ("try_number", pa.int32()),
            ("state", pa.string()),
            ("error_type", pa.string()),
            ("error", pa.string()),
            ("is_transient", pa.bool_()),
        ]
    ),
    INTEGRITY: pa.schema(
        [
            ("as_of", pa.date32()),
            ("measured_at", _INSTANT),
            ("check", pa.string()),
            ("title", pa.string()),
            ("table_name", pa.string()),
            ("table_version", pa.int64()),
            ("resolved", pa.int64()),
            ("total", pa.int64()),
            ("share", pa.float64()),
        ]
    ),
    LANDING_REFUSALS: pa.schema(
        [
            ("source_id", pa.string()),
            ("delivery_date", pa.date32()),
            ("source_file", pa.string()),  # the entry's path relative to the landing root
            ("reason_code", pa.string()),  # symlink | hidden | folder | not_a_file | outside
            ("reason", pa.string()),
            ("found_at", _INSTANT),
        ]
    ),
}


def now() -> dt.datetime:
    """The moment, as ops.* tables record it."""
    return dt.datetime.now(dt.UTC)


def append(lake: Lake, table: str, rows: list[dict]) -> int:
    """Append rows to ops.<table>; returns the version written (nothing written for no rows)."""
    if not rows:
        return lake.version("ops", table) if lake.exists("ops", table) else -1
    return lake.append_rows("ops", table, rows, SCHEMAS[table])
