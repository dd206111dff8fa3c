"""The one place where CityLake reads and writes Delta tables.

Tables live at <data root>/lake/<layer>/<name> and are addressed by (layer, name), e.g.
("bronze", "gongan__household_register"). Three kinds of access, each where it is cheapest:

* Spark, for the tables that carry the city's rows (bronze, quarantine, silver, gold): every
  write is a single Delta commit, so a task killed mid-write leaves the table at its previous
  version. The session is opened on first use, so a step that needs no Spark never starts one.
* The Delta log itself, read in Python, for what a commit says (version, operation metrics,
  the metadata CityLake attaches to it): no Spark job for a version number.
* delta-rs (the `deltalake` package), for the small bookkeeping tables of ops.* (manifest,
  ledger, quality results, run log): an append is a commit of a few rows in some 50 ms, where a
  Spark job costs most of a second. Only delta-rs writes ops.* tables; Spark and DuckDB read them.

DuckDB reads any table at a pinned version through its delta extension (`scan`), for gates,
reports and publication.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable, Collection
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from citylake.config import CITY_TIMEZONE, Environment

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

LAYERS = ("bronze", "silver", "gold", "quarantine", "ops")
# Batch-written tables (bronze, quarantine) are read by batch and date, and looked up by row:
# file statistics on those columns alone, not on every delivered text column, which would cost
# the write a large share of its time.
BATCH_STATS_COLUMNS = "_batch_id,_delivery_date,_row_number"
# What Delta says when two writers create one table concurrently.
CREATION_RACES = ("DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED")
# Columns CityLake keeps beside an SCD type 2 history.
VALIDITY = ("valid_from", "valid_to", "is_current")
# The key of CityLake's own entry in a commit's userMetadata (JSON).
METADATA_KEY = "citylake"


# ----------------------------------------------------------------------------- the Delta log


def delta_log(path: Path) -> Path:
    return path / "_delta_log"


def is_delta(path: Path) -> bool:
    return delta_log(path).is_dir()


def latest_version(path: Path) -> int | None:
    """The newest committed version of the table at path (None when there is no table)."""
    try:
        names = os.listdir(delta_log(path))
    except FileNotFoundError:
        return None
    versions = [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]
    return max(versions) if versions else None


def commit_info(path: Path, version: int) -> dict:
    """The commitInfo action of one commit: operation, operationMetrics, userMetadata..."""
    commit = delta_log(path) / f"{version:020d}.json"
    with commit.open(encoding="utf-8") as handle:
        for line in handle:
            action = json.loads(line)
            if "commitInfo" in action:
                return action["commitInfo"]
    return {}


def citylake_metadata(info: dict) -> dict:
    """What CityLake attached to a commit (see Lake.metadata_option), {} when nothing."""
    try:
        return json.loads(info.get("userMetadata") or "{}").get(METADATA_KEY) or {}
    except (json.JSONDecodeError, AttributeError):
        return {}


def user_metadata(metadata: dict[str, Any]) -> str:
    return json.dumps({METADATA_KEY: metadata}, ensure_ascii=False, sort_keys=True, default=str)


# ----------------------------------------------------------------------------- DuckDB


def load_extensions(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    """Load DuckDB extensions from their PyPI packages: offline, never downloaded."""
    import duckdb

    for name in names:
        package = files(f"duckdb_extension_{name}")
        path = package.joinpath("extensions", f"v{duckdb.__version__}", f"{name}.duckdb_extension")
        con.execute(f"LOAD '{path}'")


# A relation for (layer, name): SQL text such as "delta_scan('...')", or None if there is no table
# (Lake.scan, or read_parquet over a test's files: what the serving SQL is written against).
Scan = Callable[[str, str], "str | None"]


def columns_of(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    """The column names of a relation, in order."""
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def sql_text(value: object) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def delta_relation(path: Path, version: int | None = None) -> str:
    """DuckDB's relation over a Delta table, pinned to a version when given."""
    pinned = f", version := {int(version)}" if version is not None else ""
    return f"delta_scan({sql_text(path.as_posix())}{pinned})"


def scan_of(env: Environment, layer: str, name: str, version: int | None = None) -> str | None:
    """DuckDB's relation over <layer>.<name> of the lake (pinned to a version when given), None
    when there is no such table: for readers that need no Lake (reports, freshness)."""
    path = env.table_path(layer, name)
    return delta_relation(path, version) if is_delta(path) else None


def delta_tables(folder: Path) -> list[Path]:
    """The Delta tables directly under a folder (a layer of the lake), by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_delta(p))


def duckdb_connection(database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect(database)
    load_extensions(con, "delta")
    return con


_READER: dict[int, duckdb.DuckDBPyConnection] = {}  # process id → its in-memory DuckDB
_READER_LOCK = threading.Lock()


def reader() -> duckdb.DuckDBPyConnection:
    """A cursor of this process's in-memory DuckDB, the delta extension loaded once per process
    (a load costs some 0.1 s, and a step's reports used to pay it three times); a cursor per use,
    as DuckDB wants across threads, closed by `with reader() as con`. A forked child opens its
    own database rather than share its parent's."""
    with _READER_LOCK:
        database = _READER.get(os.getpid())
        if database is None:
            _READER.clear()
            database = _READER[os.getpid()] = duckdb_connection()
    return database.cursor()


# Columns that say when a run happened, not what it found: left out of a fingerprint, so two
# runs over the same deliveries fingerprint the same. In the lake, the ingest time of each row;
# in a serving file, the run-time columns of the publication and of its health tables (which
# report on ops.*: manifest times, gate and run times).
RUN_TIME_COLUMNS = frozenset({"_ingested_at"})
SERVING_RUN_TIME_COLUMNS = frozenset(
    {"published_at", "state_json", "ingested_at", "last_ingested_at", "started_at", "ended_at",
     "logged_at", "checked_at", "checked_date", "seconds", "duration_s", "duration_seconds",
     "run_id", "arrived_at"}
)  # fmt: skip


def fingerprint(
    con: duckdb.DuckDBPyConnection, relation: str, exclude: Collection[str] = RUN_TIME_COLUMNS
) -> tuple[int, str]:
    """(rows, order-free md5 of every row) of a relation, run-time columns left out: equal
    fingerprints mean equal contents, whatever the files or the row order."""
    names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    listed = ", ".join(f'"{n}" := "{n}"' for n in names if n not in exclude) or "x := 0"
    rows, digest = con.execute(
        f"SELECT count(*), md5(coalesce(string_agg(h, ',' ORDER BY h), '')) FROM"
        f" (SELECT md5(CAST(struct_pack({listed}) AS VARCHAR)) AS h FROM {relation})"
    ).fetchone()
    return rows, digest


# ----------------------------------------------------------------------------- the lake


class Lake:
    def __init__(self, env: Environment, spark: SparkSession | None = None):
        self.env = env
        self._spark = spark

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            from citylake.spark import get_spark

            self._spark = get_spark(self.env)
        return self._spark

    # ------------------------------------------------------------------ addressing, the log

    def table_path(self, layer: str, name: str) -> Path:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer '{layer}' (one of {', '.join(LAYERS)})")
        return self.env.table_path(layer, name)

    def path(self, layer: str, name: str) -> str:
        return str(self.table_path(layer, name))

    def exists(self, layer: str, name: str) -> bool:
        return is_delta(self.table_path(layer, name))

    def version(self, layer: str, name: str) -> int:
        version = latest_version(self.table_path(layer, name))
        if version is None:
            raise FileNotFoundError(
                f"{layer}.{name}: no such Delta table under {self.env.lake_root}"
            )
        return version

    def commit(self, layer: str, name: str, version: int | None = None) -> dict:
        """The commitInfo of a version (default: the latest)."""
        if version is None:
            version = self.version(layer, name)
        return commit_info(self.table_path(layer, name), version)

    def metadata(self, layer: str, name: str, version: int | None = None) -> dict:
        """CityLake's metadata on a commit (a gold build's as-of date and inputs, ...)."""
        return citylake_metadata(self.commit(layer, name, version))

    def rows_written(self, layer: str, name: str) -> int:
        """Rows the table's last commit wrote, from Delta's own metrics (no scan of the data)."""
        metrics = self.commit(layer, name).get("operationMetrics") or {}
        return int(metrics.get("numOutputRows", 0))

    def history(self, layer: str, name: str, limit: int = 20) -> list[dict]:
        """The newest commits, newest first: version, timestamp (ms), operation, metrics."""
        path, newest = self.table_path(layer, name), self.version(layer, name)
        found = []
        for version in range(newest, max(newest - limit, -1), -1):
            try:
                found.append({"version": version, **commit_info(path, version)})
            except FileNotFoundError:  # cleaned up after a checkpoint
                break
        return found

    def version_at(self, layer: str, name: str, moment: dt.datetime) -> int | None:
        """The version a reader saw at moment (an aware time, or naive on the city's clock): the
        newest commit made at or before it; None when the table did not exist yet."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(CITY_TIMEZONE))
        limit = moment.timestamp() * 1000
        path = self.table_path(layer, name)
        newest = latest_version(path)
        for version in range(newest if newest is not None else -1, -1, -1):
            try:
                if commit_info(path, version).get("timestamp", 0) <= limit:
                    return version
            except FileNotFoundError:  # older commits cleaned up: nothing older to read
                return None
        return None

    # ------------------------------------------------------------------ Spark

    def read(self, layer: str, name: str, version: int | None = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(layer, name))

    def replace_batch(
        self,
        df: DataFrame,
        layer: str,
        name: str,
        batch_id: str,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Write one batch's rows, replacing any earlier attempt of the same batch (idempotent).
        Returns the rows written, from Delta's metrics. An empty batch that replaces nothing makes
        no commit at all (Delta skips it), so the last commit's metrics are not this write's: the
        version is compared before and after."""
        writer = df.write.format("delta").mode("overwrite")
        before = self.version(layer, name) if self.exists(layer, name) else -1
        if before >= 0:
            # mergeSchema: a column added to bronze or quarantine (by a newer CityLake) is added
            # to the table; rows written before hold null in it
            writer = writer.option("replaceWhere", f"_batch_id = {sql_text(batch_id)}").option(
                "mergeSchema", "true"
            )
        else:
            writer = writer.option("delta.dataSkippingStatsColumns", BATCH_STATS_COLUMNS)
        self._save(writer, layer, name, metadata)
        if self.version(layer, name) == before:
            return 0
        return self.rows_written(layer, name)

    def overwrite(
        self, df: DataFrame, layer: str, name: str, metadata: dict[str, Any] | None = None
    ) -> None:
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        self._save(writer, layer, name, metadata)

    def append(
        self, df: DataFrame, layer: str, name: str, metadata: dict[str, Any] | None = None
    ) -> None:
        """Add rows to a table in one commit (Spark), creating it when absent."""
        self._save(df.write.format("delta").mode("append"), layer, name, metadata)

    def _save(self, writer, layer: str, name: str, metadata: dict[str, Any] | None) -> None:
        """One Spark write = one commit, carrying CityLake's metadata when given."""
        if metadata:
            writer = writer.option("userMetadata", user_metadata(metadata))
        writer.save(self.path(layer, name))

    def restore(self, layer: str, name: str, version: int) -> None:
        """Bring the table back to an earlier version (a new commit; history is kept)."""
        self.spark.sql(
            f"RESTORE TABLE delta.`{self.path(layer, name)}` TO VERSION AS OF {int(version)}"
        ).collect()

    def _sql_with_metadata(self, statement: str, metadata: dict[str, Any] | None) -> None:
        key = "spark.databricks.delta.commitInfo.userMetadata"
        if metadata:
            self.spark.conf.set(key, user_metadata(metadata))
        try:
            self.spark.sql(statement)
        finally:
            if metadata:
                self.spark.conf.unset(key)

    def merge_silver(
        self,
        df: DataFrame,
        name: str,
        keys: list[str],
        history: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict:
        """MERGE a batch's accepted rows into silver.<name>, one current row per key.

        Batches arrive in delivery order (citylake.flow keeps a ledger and rewinds when an older
        one comes late), so a batch is never older than what silver holds. Rows identical to the
        current version (same `_row_hash` over the value columns) are left out before the MERGE,
        so a full daily extract in which 1% of keys changed rewrites only the files holding that
        1%, and unchanged rows keep the lineage of the file that first said so.

        With `history` (SCD type 2): a change in one of those columns closes the current row
        (valid_to = the new row's delivery date, is_current = false) and inserts the new version,
        unless the current version began the same day (a later file of that day supersedes it in
        place, so no version lasts zero days); a change elsewhere corrects the current row in
        place. Returns the MERGE's own metrics: rows inserted and updated (closed or corrected).
        """
        from pyspark.sql import functions as F

        history = list(history or [])
        value_columns = [c for c in df.columns if not c.startswith("_")]
        df = df.withColumn("_row_hash", F.sha2(F.to_json(F.struct(*value_columns)), 256))
        if history:
            df = (
                df.withColumn("valid_from", F.col("_delivery_date"))
                .withColumn("valid_to", F.lit(None).cast("date"))
                .withColumn("is_current", F.lit(True))
            )
        if not self.exists("silver", name):
            self.overwrite(df, "silver", name, metadata)
            return {"inserted": self.rows_written("silver", name), "updated": 0}
        current = self.read("silver", name)
        if history:
            current = current.where("is_current")
        changed = df.join(current.select(*keys, "_row_hash"), [*keys, "_row_hash"], "left_anti")
        view = f"_merge_silver_{name}"
        changed.createOrReplaceTempView(view)
        path = self.path("silver", name)
        columns = [f"`{c}`" for c in df.columns]
        on_keys = " AND ".join(f"t.`{k}` = u.`{k}`" for k in keys)
        if not history:
            statement = (
                f"MERGE INTO delta.`{path}` t USING {view} u ON {on_keys} "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            )
        else:

            def same(a: str, b: str) -> str:
                return " AND ".join(f"{a}.`{c}` <=> {b}.`{c}`" for c in history)

            merge_keys = ", ".join(f"s.`{k}` AS `_mk_{k}`" for k in keys)
            null_keys = ", ".join(f"CAST(NULL AS STRING) AS `_mk_{k}`" for k in keys)
            join_c = " AND ".join(f"s.`{k}` = c.`{k}`" for k in keys)
            on_merge = " AND ".join(f"t.`{k}` = u.`_mk_{k}`" for k in keys)
            in_place = ", ".join(f"t.{c} = u.{c}" for c in columns if c.strip("`") not in VALIDITY)
            statement = f"""
                MERGE INTO delta.`{path}` t
                USING (
                    SELECT s.*, {merge_keys} FROM {view} s
                    UNION ALL
                    SELECT s.*, {null_keys} FROM {view} s
                    JOIN delta.`{path}` c ON {join_c} AND c.is_current
                    WHERE NOT ({same("c", "s")}) AND c.valid_from < s.valid_from
                ) u
                ON {on_merge} AND t.is_current
                WHEN MATCHED AND NOT ({same("t", "u")}) AND t.valid_from < u.valid_from THEN
                    UPDATE SET t.is_current = false, t.valid_to = u.valid_from
                WHEN MATCHED THEN UPDATE SET {in_place}
                WHEN NOT MATCHED THEN INSERT ({", ".join(columns)})
                    VALUES ({", ".join(f"u.{c}" for c in columns)})
            """
        self._sql_with_metadata(statement, metadata)
        self.spark.catalog.dropTempView(view)
        metrics = self.commit("silver", name).get("operationMetrics") or {}
        return {
            "inserted": int(metrics.get("numTargetRowsInserted", 0)),
            "updated": int(metrics.get("numTargetRowsUpdated", 0)),
        }

    # ------------------------------------------------------------------ small tables (delta-rs)

    def append_rows(self, layer: str, name: str, rows: list[dict], schema: pa.Schema) -> int:
        """Append rows to a small table with delta-rs; returns the version written.

        Two first writers of a fresh table race for version 0 and delta-rs refuses the later
        one; it committed nothing, so it appends again, to the table the other one created."""
        import pyarrow as pa
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError, DeltaError

        from citylake.spark import retention_properties

        table = pa.Table.from_pylist(rows, schema=schema)
        path = self.table_path(layer, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            try:
                created = None if is_delta(path) else retention_properties(self.env)
                write_deltalake(
                    str(path), table, mode="append", schema_mode="merge", configuration=created
                )
                return self.version(layer, name)
            except (CommitFailedError, DeltaError):
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def delete_rows(self, layer: str, name: str, predicate: str) -> int:
        """Delete rows of a small table matching a SQL predicate (delta-rs); returns how many."""
        from deltalake import DeltaTable

        if not self.exists(layer, name):
            return 0
        metrics = DeltaTable(self.path(layer, name)).delete(predicate)
        return int(metrics.get("num_deleted_rows", 0))

    def compact(self, layer: str, name: str, min_files: int = 64) -> bool:
        """Compact a small table appended to a few rows at a time, and checkpoint its log, once
        it has min_files files; readers then open one file instead of thousands."""
        from deltalake import DeltaTable

        if not self.exists(layer, name):
            return False
        table = DeltaTable(self.path(layer, name))
        if len(table.file_uris()) < min_files:
            return False
        table.optimize.compact()
        table.create_checkpoint()
        return True

    # ------------------------------------------------------------------ DuckDB

    def scan(self, layer: str, name: str, version: int | None = None) -> str | None:
        """DuckDB's relation over a table (pinned to a version when given), None if absent."""
        return scan_of(self.env, layer, name, version)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of the process's in-memory DuckDB (citylake.lake.reader)."""
        return reader()

    def query(self, sql: str, parameters: list | None = None) -> list[tuple]:
        """Run one DuckDB query (relations from scan()) and fetch its rows."""
        with self._cursor() as con:
            return con.execute(sql, parameters or []).fetchall()

    def fingerprint(self, layer: str, name: str, version: int | None = None) -> tuple[int, str]:
        """(rows, digest) of a table at a version (see fingerprint())."""
        with self._cursor() as con:
            return fingerprint(con, self.scan(layer, name, version))

    def fingerprints(self, layers: tuple[str, ...] = ("silver", "gold")) -> dict[str, tuple]:
        """{'layer.name': (rows, digest)} of every table of the layers, at their latest version."""
        found = {}
        for layer in layers:
            folder = self.env.lake_root / layer
            names = (
                sorted(p.name for p in folder.iterdir() if is_delta(p)) if folder.is_dir() else []
            )
            for name in names:
                found[f"{layer}.{name}"] = self.fingerprint(layer, name)
        return found

    def arrow(self, sql: str, parameters: list | None = None) -> pa.Table:
        with self._cursor() as con:
            return con.execute(sql, parameters or []).fetch_arrow_table()


def serving_fingerprints(path: Path) -> dict[str, tuple[int, str]]:
    """{'serving.<table>': (rows, digest)} of every table and view of a serving file."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        load_extensions(con, "spatial")
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        names += [
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        ]
        return {
            f"serving.{n}": fingerprint(
                con,
                f'"{n}"',
                RUN_TIME_COLUMNS | SERVING_RUN_TIME_COLUMNS
                if n == "serving_info" or n.startswith("health_")
                else RUN_TIME_COLUMNS,
            )
            for n in sorted(names)
        }
