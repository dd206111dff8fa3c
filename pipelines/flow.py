"""The pipeline steps, one function each. `citylake run`, the Airflow tasks and the tests all call
these same functions; each opens its SparkSession from the one factory (a Spark Connect client
when the stack runs) and returns a small JSON-serialisable summary.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from base_libraries import catalog
from base_libraries import integrity as integrity_step
from base_libraries.builds import builder
from base_libraries.inputs import BuildInputs
from citylake.config import settings
from citylake.spark import get_spark
from pipelines import ingest as ingest_step
from pipelines import publish as publish_step
from pipelines import silver
from pipelines.ingest import DeliveryError
from pipelines.lake import Lake
from pipelines.standardize import division_eras_frame
from quality import docs as quality_docs
from quality import report as delivery_report
from quality import runner
from quality.runner import QualityGateFailed

__all__ = [
    "CITY",
    "DeliveryError",
    "QualityGateFailed",
    "build",
    "check_quality",
    "ingest",
    "integrity",
    "publish",
    "run_city",
    "standardize",
]

# The whole city: every source with a contract, every gold table of the catalog in build order.
CITY = {
    "sources": sorted({s for t in catalog.GOLD_TABLES for s in t.sources}),
    "tables": [t.name for t in catalog.build_order()],
}


def _lake() -> Lake:
    env, _, _ = settings()
    return Lake(get_spark(env), env)


def ingest(source_id: str, logical_date: dt.date) -> dict:
    """Landing → bronze for the files delivered on logical_date."""
    _, _, contracts = settings()
    lake = _lake()
    files = ingest_step.ingest_source(lake, contracts[source_id], logical_date)
    summary = {"source_id": source_id, "date": logical_date.isoformat(), "files": files}
    if files:  # bronze gate over the day's rows: a hard failure stops standardization
        summary["quality"] = runner.check_table(lake, "bronze", source_id, logical_date)
    return summary


def standardize(source_id: str, logical_date: dt.date) -> dict:
    """Bronze batches of logical_date → silver.<entity> (MERGE by key) + quarantine.<source_id>."""
    _, city, contracts = settings()
    contract = contracts[source_id]
    lake = _lake()
    bronze = lake.read("bronze", source_id).where(F.col("_delivery_date") == F.lit(logical_date))
    # The day's batches in the order they arrived (a correction delivered later that day must be
    # applied after what it corrects), header-only deliveries included, from the manifest.
    manifest = (
        lake.read("ops", ingest_step.MANIFEST) if lake.exists("ops", ingest_step.MANIFEST) else None
    )
    batches = []
    if manifest is not None:
        arrived = (
            manifest.where(
                (F.col("source_id") == source_id) & (F.col("delivery_date") == F.lit(logical_date))
            )
            .groupBy("batch_id")
            .agg(F.min("ingested_at").alias("first"))
            .orderBy("first", "batch_id")
            .collect()
        )
        batches = [r["batch_id"] for r in arrived]
    if not batches:
        raise DeliveryError(
            f"bronze.{source_id}: no batch delivered on {logical_date}; ingest first"
        )
    summary = {"source_id": source_id, "date": logical_date.isoformat(), "batches": []}
    eras = division_eras_frame(lake.spark)
    for batch_id in batches:
        batch = bronze.where(F.col("_batch_id") == batch_id)
        standardized = silver.standardize(batch, contract, city, eras, logical_date).persist()
        good, bad = silver.accepted(standardized), silver.quarantined(standardized)
        lake.replace_batch(bad, "quarantine", source_id, batch_id)
        merged = lake.merge_silver(
            good, contract.silver_table, contract.business_key, contract.history
        )
        delivered = batch.count()
        n_bad = lake.read("quarantine", source_id).where(F.col("_batch_id") == batch_id).count()
        n_good = good.count()
        standardized.unpersist()
        if delivered != n_good + n_bad:
            raise RuntimeError(
                f"{source_id} batch {batch_id}: delivered {delivered} != accepted "
                f"{n_good} + quarantined {n_bad}; refusing to go on"
            )
        summary["batches"].append(
            {
                "batch_id": batch_id,
                "delivered": delivered,
                "accepted": n_good,
                "quarantined": n_bad,
                "silver": merged,
            }
        )
    # The silver gate (a hard failure blocks the gold builds that read this table), then the
    # department's delivery report, which includes what the gates found.
    try:
        summary["quality"] = runner.check_table(lake, "silver", contract.silver_table, logical_date)
    finally:
        _, report_path = delivery_report.write_report(
            lake.env, contracts, contract.department, logical_date
        )
        summary["report"] = str(report_path)
    return summary


def build_inputs(lake: Lake, spec: catalog.GoldTable, as_of: dt.date) -> BuildInputs:
    _, city, _ = settings()
    missing = [f"silver.{n}" for n in spec.silver if not lake.exists("silver", n)]
    missing += [f"gold.{n}" for n in spec.gold if not lake.exists("gold", n)]
    if missing:
        raise DeliveryError(
            f"gold.{spec.name} needs {', '.join(missing)}, which do not exist yet: "
            "ingest and standardize its sources (and build the gold tables it reads) first"
        )
    return BuildInputs(
        spark=lake.spark,
        city=city,
        as_of=as_of,
        silver={n: lake.read("silver", n) for n in spec.silver},
        gold={n: lake.read("gold", n) for n in spec.gold},
    )


def build(table: str, as_of: dt.date | None = None) -> dict:
    """Silver (+ gold it reads) → gold.<table>, a new Delta version; published only once its gate
    passes. as_of is the run's logical date (ages, licence status, overdue cases depend on it)."""
    lake = _lake()
    spec = catalog.gold_table(table)
    if as_of is None:
        as_of = dt.date.today()
    lake.overwrite(builder(table)(build_inputs(lake, spec, as_of)), "gold", table)
    return {
        "table": f"gold.{table}",
        "as_of": as_of.isoformat(),
        "version": lake.version("gold", table),
        "rows": lake.rows_written("gold", table),
    }


def check_quality(table: str, layer: str = "gold", logical_date: dt.date | None = None) -> dict:
    """Run the table's suite on its current Delta version (bronze: that day's rows), record the
    results in ops.quality_results, raise QualityGateFailed if a hard expectation fails."""
    return runner.check_table(_lake(), layer, table, logical_date)


def publish(logical_date: dt.date | None = None) -> dict:
    """Gold → var/serving/city.duckdb (only gate-passed versions; atomic swap), with the
    cross-library integrity measured first, and the Data Docs site rebuilt after."""
    env, city, contracts = settings()
    measured = integrity(logical_date)
    served = publish_step.publish(env, city, contracts, logical_date)
    docs = quality_docs.build_data_docs(env)
    return {**served, **measured, "data_docs": str(docs)}


def integrity(as_of: dt.date | None = None) -> dict:
    """Measure how the base libraries link up (share of keys that resolve) into ops.integrity."""
    lake = _lake()
    versions = {
        t.name: lake.version("gold", t.name)
        for t in catalog.GOLD_TABLES
        if lake.exists("gold", t.name)
    }
    rows = integrity_step.measure(
        lambda name: lake.read("gold", name, version=versions[name]),
        versions,
        as_of or dt.date.today(),
    )
    lake.append(lake.spark.createDataFrame(rows, integrity_step.SCHEMA), "ops", "integrity")
    return {"integrity": {r[2]: {"resolved": r[6], "total": r[7], "share": r[8]} for r in rows}}


def city_plan(tables: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(sources, gold tables in build order) of a run: the whole city, or only the named gold
    tables with the gold tables they read and the sources all of those are built from."""
    if not tables:
        return CITY["sources"], CITY["tables"]
    chosen = catalog.with_inputs(tables)
    sources = sorted({s for t in chosen for s in t.sources})
    return sources, [t.name for t in chosen]


def run_city(logical_date: dt.date, progress=None, tables: list[str] | None = None) -> list[dict]:
    """The whole city for one logical date in this process (what `citylake run` does): ingest and
    standardize every source with a delivery that day, build every gold table in catalog order,
    check each, publish. A source without a delivery that day keeps its silver as it was.
    `tables` narrows the run to those gold tables and what they are built from (publication
    then serves the gold tables that exist)."""
    sources, planned_tables = city_plan(tables)
    results = []

    def step(name: str, function, *args) -> dict:
        if progress:
            progress(name)
        result = {"step": name, **function(*args)}
        results.append(result)
        return result

    for source_id in sources:
        ingested = step(f"ingest {source_id}", ingest, source_id, logical_date)
        if ingested["files"]:
            step(f"standardize {source_id}", standardize, source_id, logical_date)
        elif progress:
            progress(f"standardize {source_id} (no delivery)")
    for table in planned_tables:
        step(f"build {table}", build, table, logical_date)
    for table in planned_tables:
        step(f"quality {table}", check_quality, table)
    step("publish serving", publish, logical_date)
    return results
