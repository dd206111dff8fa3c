"""The one place where CityLake reads and writes Delta tables.

Tables live at <data root>/lake/<layer>/<name> and are addressed by (layer, name), e.g.
("bronze", "gongan__household_register"). Every write is a single Delta commit, so a task killed
mid-write leaves the table at its previous version.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from citylake.config import Environment

LAYERS = ("bronze", "silver", "gold", "quarantine", "ops")
# Batch-written tables (bronze, quarantine) are read by batch and date, and looked up by row:
# file statistics on those columns alone, not on every delivered text column, which would cost
# the write a large share of its time.
BATCH_STATS_COLUMNS = "_batch_id,_delivery_date,_row_number"
# What Delta says when two writers create one table concurrently.
CREATION_RACES = ("DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED")


class Lake:
    def __init__(self, spark: SparkSession, env: Environment):
        self.spark = spark
        self.env = env

    def path(self, layer: str, name: str) -> str:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer '{layer}' (one of {', '.join(LAYERS)})")
        return str(self.env.table_path(layer, name))

    def exists(self, layer: str, name: str) -> bool:
        return (self.env.table_path(layer, name) / "_delta_log").is_dir()

    def read(self, layer: str, name: str, version: int | None = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(layer, name))

    def version(self, layer: str, name: str) -> int:
        return int(self._last_commit(layer, name)["version"])

    def rows_written(self, layer: str, name: str) -> int:
        """Rows the table's last commit wrote, from Delta's own metrics (no scan of the data)."""
        return int(self._last_commit(layer, name)["operationMetrics"]["numOutputRows"])

    def _last_commit(self, layer: str, name: str):
        history = self.spark.sql(f"DESCRIBE HISTORY delta.`{self.path(layer, name)}` LIMIT 1")
        return history.select("version", "operationMetrics").first()

    def replace_batch(self, df: DataFrame, layer: str, name: str, batch_id: str) -> None:
        """Write one batch's rows, replacing any earlier attempt of the same batch (idempotent)."""
        writer = df.write.format("delta").mode("overwrite")
        if self.exists(layer, name):
            writer = writer.option("replaceWhere", f"_batch_id = '{batch_id}'")
        else:
            writer = writer.option("delta.dataSkippingStatsColumns", BATCH_STATS_COLUMNS)
        writer.save(self.path(layer, name))

    def overwrite(self, df: DataFrame, layer: str, name: str) -> None:
        df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
            self.path(layer, name)
        )

    def append(self, df: DataFrame, layer: str, name: str) -> None:
        """Append rows. Two writers creating the same table at once (two Airflow tasks writing
        the first ops.* rows of a fresh lake) race, and Delta fails the later one; it committed
        nothing, so it appends again, to the table the other one created."""
        created_here = not self.exists(layer, name)
        try:
            df.write.format("delta").mode("append").save(self.path(layer, name))
        except Exception as error:  # classic (Py4J) and Connect (gRPC) raise different types
            if not created_here or not any(m in str(error) for m in CREATION_RACES):
                raise
            df.write.format("delta").mode("append").save(self.path(layer, name))

    def upsert(self, df: DataFrame, layer: str, name: str, keys: list[str]) -> None:
        """MERGE rows by key: a delivery touching a few keys rewrites only the files holding them.

        SQL MERGE rather than the DeltaTable API, because it also works through Spark Connect.
        """
        if not self.exists(layer, name):
            self.overwrite(df, layer, name)
            return
        view = f"_upsert_{layer}_{name}"
        df.createOrReplaceTempView(view)
        condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        self.spark.sql(
            f"MERGE INTO delta.`{self.path(layer, name)}` t USING {view} s ON {condition} "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
        self.spark.catalog.dropTempView(view)

    def merge_silver(
        self, df: DataFrame, name: str, keys: list[str], history: list[str] | None = None
    ) -> dict:
        """MERGE a batch's accepted rows into silver.<name>, one current row per key.

        Rows identical to the current version (same `_row_hash` over the value columns) are left
        out before the MERGE, so a full daily extract in which 1% of keys changed rewrites only the
        files holding that 1%, and unchanged rows keep the lineage of the file that first said so.
        With `history` (SCD type 2): a change in one of those columns closes the current row
        (valid_to = the new row's delivery date, is_current = false) and inserts the new version;
        a change elsewhere corrects the current row in place.
        Returns the MERGE's own metrics: rows inserted and updated (closed or corrected).
        """
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
            self.overwrite(df, "silver", name)
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
            self.spark.sql(
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
            corrections = ", ".join(
                f"t.{c} = u.{c}"
                for c in columns
                if c.strip("`") not in ("valid_from", "valid_to", "is_current")
            )
            self.spark.sql(f"""
                MERGE INTO delta.`{path}` t
                USING (
                    SELECT s.*, {merge_keys} FROM {view} s
                    UNION ALL
                    SELECT s.*, {null_keys} FROM {view} s
                    JOIN delta.`{path}` c ON {join_c} AND c.is_current
                    WHERE NOT ({same("c", "s")})
                ) u
                ON {on_merge} AND t.is_current
                WHEN MATCHED AND NOT ({same("t", "u")}) THEN
                    UPDATE SET t.is_current = false, t.valid_to = u.valid_from
                WHEN MATCHED THEN UPDATE SET {corrections}
                WHEN NOT MATCHED THEN INSERT ({", ".join(columns)})
                    VALUES ({", ".join(f"u.{c}" for c in columns)})
            """)
        self.spark.catalog.dropTempView(view)
        metrics = self._last_commit("silver", name)["operationMetrics"]
        return {
            "inserted": int(metrics.get("numTargetRowsInserted", 0)),
            "updated": int(metrics.get("numTargetRowsUpdated", 0)),
        }
