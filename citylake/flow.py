"""The pipeline steps, one function each. `citylake run`, the Airflow tasks and the tests all call
these same functions; each returns a small JSON-serialisable summary.

Every step does only the work its inputs call for, so rerunning a day, or running it again after
later days, changes nothing that is already right:

* ingest skips files whose content is recorded already (a re-delivery on a later day is
  recorded as such);
* standardize applies a day's batches to silver in delivery order through the silver ledger
  (pipelines/ledger.py), rewinding when an older batch comes late; batches already applied are
  left alone;
* build makes gold as of the newest day it has seen, from silver as it stood on that day, and
  skips when the inputs (their versions, the as-of date, the build code) are those of the gold
  table's current version;
* a gate judges each version once; publication serves, per table, the newest version whose gate
  passed, and skips when that set is the one already served.

Spark starts only in the steps that need it (citylake.lake.Lake opens it on first use).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from importlib.metadata import version

from base_libraries import integrity as integrity_step
from base_libraries.builds import builder
from base_libraries.inputs import BuildInputs
from citylake import catalogue, locks
from citylake.config import CONF_DIR, city_yesterday, settings
from citylake.lake import Lake
from pipelines import ingest as ingest_step
from pipelines import ledger, ops, silver
from pipelines import publish as publish_step
from pipelines.delivery import DeliveryError
from pipelines.standardize import division_eras_frame
from quality import docs as quality_docs
from quality import report as delivery_report
from quality import runner
from quality.validation import QualityGateFailed

__all__ = [
    "CITY",
    "DeliveryError",
    "QualityGateFailed",
    "build",
    "check_quality",
    "ingest",
    "integrity",
    "pending",
    "publish",
    "run_city",
    "standardize",
]

# The whole city: every source with a contract, every gold table of the catalogue in build order.
CITY = {
    "sources": sorted({s for t in catalogue.GOLD_TABLES for s in t.sources}),
    "tables": [t.name for t in catalogue.build_order()],
}


LOG = logging.getLogger(__name__)
_LAKES: dict[int, Lake] = {}


def _lake() -> Lake:
    """One Lake per environment and process: its Spark session and DuckDB connection are opened
    once, for all the steps a process runs (`citylake run` runs them all)."""
    env, _, _ = settings()
    lake = _LAKES.get(id(env))
    if lake is None or lake.env is not env:
        lake = _LAKES[id(env)] = Lake(env)
    return lake


# ----------------------------------------------------------------------------- ingest


def ingest(source_id: str, logical_date: dt.date) -> dict:
    """Landing → bronze for the files delivered on logical_date; the bronze gate over the new
    batches (a hard failure stops their standardization)."""
    env, _, contracts = settings()
    lake = _lake()
    with locks.held(env, f"bronze.{source_id}"):
        files, refused = ingest_step.ingest_source(lake, contracts[source_id], logical_date)
    summary = {"source_id": source_id, "date": logical_date.isoformat(), "files": files}
    if refused:  # reported on every run of the day, recorded once in ops.landing_refusals
        summary["refused"] = refused
        for entry in refused:
            LOG.warning("%s: refused %s: %s", source_id, entry["file"], entry["reason"])
        if not files:
            raise DeliveryError(
                f"{source_id}: nothing taken on {logical_date}: every entry of the day folder "
                "was refused at the landing zone's boundary ("
                + "; ".join(f"{e['file']}: {e['reason']}" for e in refused)
                + "); recorded in ops.landing_refusals"
            )
    new = [f["batch_id"] for f in files if not f["skipped"]]
    if new:
        summary["quality"] = runner.check_table(
            lake, "bronze", source_id, logical_date, batches=new
        )
    return summary


def pending(logical_date: dt.date) -> dict[str, list[str]]:
    """Files delivered for logical_date that the manifest has not recorded for that day, by
    source: what a run of the day would take (empty: nothing new delivered). No Spark."""
    env, _, contracts = settings()
    lake = _lake()
    waiting: dict[str, list[str]] = {}
    for source_id in CITY["sources"]:
        contract = contracts[source_id]
        folder = ingest_step.delivery_dir(env, contract, logical_date)
        if not folder.is_dir():
            continue
        recorded = {
            (r["source_file"], r["file_sha256"])
            for r in ingest_step.manifest_rows(lake, source_id, logical_date)
        }
        try:
            delivered = ingest_step.find_deliveries(env, contract, logical_date)
        except DeliveryError:  # a daily source that missed the day: nothing to take
            continue
        files = [str(path.relative_to(env.landing)) for path in delivered]
        new = [f for f in files if (f, ingest_step.file_sha256(env.landing / f)) not in recorded]
        if new:
            waiting[source_id] = new
    return waiting


# ----------------------------------------------------------------------------- standardize


def standardize(source_id: str, logical_date: dt.date) -> dict:
    """The day's bronze batches → silver.<entity> (MERGE by key, in delivery order) +
    quarantine.<source_id>; then the silver gate and the department's delivery report."""
    env, city, contracts = settings()
    contract = contracts[source_id]
    table = contract.silver_table
    lake = _lake()
    manifest = ingest_step.manifest_rows(lake, source_id)  # read once: days and row counts
    day_rows = [r for r in manifest if r["delivery_date"] == logical_date]
    if not day_rows:
        raise DeliveryError(f"{source_id}: nothing delivered on {logical_date}; ingest first")
    wanted = [
        ledger.Batch(r["delivery_date"], r["arrived_at"], r["batch_id"])
        for r in day_rows
        if r["kind"] == "batch"
    ]
    summary: dict = {"source_id": source_id, "date": logical_date.isoformat(), "batches": []}
    redelivered = sorted({r["batch_id"] for r in day_rows if r["kind"] == "redelivery"})
    if redelivered:
        summary["redelivered"] = redelivered
    with locks.held(env, f"silver.{table}"):
        applied = ledger.entries(lake, table)
        planned = ledger.plan(applied, wanted, ledger.effective_version(lake, table))
        if planned.undone:
            summary["rewound"] = [e.batch.batch_id for e in planned.undone]
        if not planned.changes:
            summary["unchanged"] = "every batch of the day is already in silver"
        else:
            _require_bronze_gates(lake, source_id, planned.to_apply)
            ledger.rewind(lake, table, planned)
            eras = division_eras_frame(lake.spark)
            delivered = {r["batch_id"]: r["rows_bronze"] for r in manifest if r["kind"] == "batch"}
            for batch in planned.to_apply:
                summary["batches"].append(
                    _apply_batch(lake, contract, city, eras, batch, delivered[batch.batch_id])
                )
    # The silver gate (a hard failure blocks the gold builds that read this table), then the
    # department's delivery report, which includes what the gates found.
    try:
        summary["quality"] = runner.check_table(lake, "silver", table, logical_date)
    finally:
        _, report_path = delivery_report.write_report(
            lake.env, contracts, contract.department, logical_date
        )
        summary["report"] = str(report_path)
    return summary


def _require_bronze_gates(lake: Lake, source_id: str, batches: list[ledger.Batch]) -> None:
    """Every batch to apply passed its bronze gate (validated now if it never was)."""
    judged = runner.bronze_verdicts(lake, source_id)
    unjudged = [b for b in batches if b.batch_id not in judged]
    for batch in unjudged:  # an ingest that died before its gate
        runner.check_table(lake, "bronze", source_id, batch.delivery_date, batches=[batch.batch_id])
        judged[batch.batch_id] = True
    failed = [b.batch_id for b in batches if not judged[b.batch_id]]
    if failed:
        raise QualityGateFailed(
            f"bronze.{source_id}: batches {failed} failed their bronze gate; the department "
            "must deliver a corrected file (see the delivery report)"
        )


def _apply_batch(lake: Lake, contract, city, eras, batch: ledger.Batch, delivered: int) -> dict:
    """One batch (delivered: its rows in bronze, from the manifest): standardized as of its
    delivery date, rejected rows to quarantine, accepted rows merged into silver, the ledger
    entry written; every row accounted for first."""
    from pyspark.sql import functions as F

    source_id, table = contract.source_id, contract.silver_table
    bronze = lake.read("bronze", source_id).where(F.col("_batch_id") == batch.batch_id)
    standardized = silver.standardize(bronze, contract, city, eras, batch.delivery_date).persist()
    try:
        counts = {
            bool(r["bad"]): r["n"]
            for r in standardized.groupBy((F.size("_reasons") > 0).alias("bad"))
            .agg(F.count(F.lit(1)).alias("n"))
            .collect()
        }
        n_good, n_bad = counts.get(False, 0), counts.get(True, 0)
        if delivered != n_good + n_bad:
            raise RuntimeError(
                f"{source_id} batch {batch.batch_id}: {delivered} rows in bronze, but "
                f"standardization gave {n_good} accepted + {n_bad} quarantined; refusing to go on"
            )
        written = lake.replace_batch(
            silver.quarantined(standardized), "quarantine", source_id, batch.batch_id
        )
        if written != n_bad:
            raise RuntimeError(
                f"{source_id} batch {batch.batch_id}: {n_bad} rows to quarantine, {written} "
                "written; refusing to go on"
            )
        before = lake.version("silver", table) if lake.exists("silver", table) else -1
        merged = lake.merge_silver(
            silver.accepted(standardized),
            table,
            contract.business_key,
            contract.history,
            metadata={"batch_id": batch.batch_id},
        )
    finally:
        standardized.unpersist()
    after = lake.version("silver", table)
    ledger.record(
        lake,
        source_id,
        table,
        batch,
        version_before=before,
        version_after=after,
        rows_delivered=delivered,
        rows_accepted=n_good,
        rows_quarantined=n_bad,
        rows_inserted=merged["inserted"],
        rows_updated=merged["updated"],
    )
    return {
        "batch_id": batch.batch_id,
        "delivery_date": batch.delivery_date.isoformat(),
        "delivered": delivered,
        "accepted": n_good,
        "quarantined": n_bad,
        "silver": merged,
        "silver_version": after,
    }


# ----------------------------------------------------------------------------- build


def code_fingerprint() -> str:
    """What a gold build's result depends on besides its data: the build code, the city and its
    working-day calendar (the package version and conf/workdays.yaml)."""
    digest = hashlib.sha256(f"chinese-calendar {version('chinese-calendar')}".encode())
    folder = catalogue.METADATA_DIR
    paths = [
        *sorted(folder.glob("*.py")),
        *sorted(folder.glob("*.yml")),
        CONF_DIR / "city.yaml",
        CONF_DIR / "workdays.yaml",
    ]
    for path in [p for p in paths if p.exists()]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_plan(lake: Lake, spec: catalogue.GoldTable, as_of: dt.date) -> dict:
    """What gold.<table> built now would be made of: its as-of date (the requested day, or the
    newest day the table or its gold inputs were built for), the silver versions as they stood
    that day, the gold versions it reads, and the code. Raises DeliveryError for missing inputs."""
    days = [as_of]
    for name in (spec.name, *spec.gold):
        if lake.exists("gold", name) and lake.metadata("gold", name).get("as_of"):
            days.append(dt.date.fromisoformat(lake.metadata("gold", name)["as_of"]))
    target = max(days)
    silver_versions = {n: ledger.version_as_of(lake, n, target) for n in spec.silver}
    missing = [f"silver.{n}" for n, v in silver_versions.items() if v is None]
    missing += [f"gold.{n}" for n in spec.gold if not lake.exists("gold", n)]
    if missing:
        raise DeliveryError(
            f"gold.{spec.name} needs {', '.join(missing)}, which do not exist yet (as of "
            f"{target}): ingest and standardize its sources (and build the gold tables it "
            "reads) first"
        )
    return {
        "as_of": target.isoformat(),
        "silver": silver_versions,
        "gold": {n: lake.version("gold", n) for n in spec.gold},
        "code": code_fingerprint(),
    }


def build_inputs(lake: Lake, spec: catalogue.GoldTable, plan: dict) -> BuildInputs:
    _, city, _ = settings()
    return BuildInputs(
        spark=lake.spark,
        city=city,
        as_of=dt.date.fromisoformat(plan["as_of"]),
        silver={n: lake.read("silver", n, version=v) for n, v in plan["silver"].items()},
        gold={n: lake.read("gold", n, version=v) for n, v in plan["gold"].items()},
    )


def build(table: str, as_of: dt.date | None = None, force: bool = False) -> dict:
    """Silver (+ gold it reads) → gold.<table>, a new Delta version carrying its plan (as-of date
    and inputs); published only once its gate passes. Skipped when the plan is the current
    version's (nothing it is made of changed), unless force."""
    env, _, _ = settings()
    lake = _lake()
    spec = catalogue.gold_table(table)
    with locks.held(env, f"gold.{table}"):
        plan = build_plan(lake, spec, as_of or city_yesterday())
        summary = {"table": f"gold.{table}", "as_of": plan["as_of"]}
        unchanged = lake.exists("gold", table) and lake.metadata("gold", table).get("plan") == plan
        if unchanged and not force:
            version = lake.version("gold", table)
            return {**summary, "version": version, "skipped": True,
                    "reason": f"inputs unchanged since version {version}"}  # fmt: skip
        frame = builder(table)(build_inputs(lake, spec, plan))
        lake.overwrite(frame, "gold", table, metadata={"as_of": plan["as_of"], "plan": plan})
        return {
            **summary,
            "version": lake.version("gold", table),
            "rows": lake.rows_written("gold", table),
            "skipped": False,
        }


def gold_as_of(lake: Lake, table: str, version: int | None = None) -> dt.date | None:
    """The day a gold version was built as of (None for a table built before plans existed)."""
    value = lake.metadata("gold", table, version).get("as_of")
    return dt.date.fromisoformat(value) if value else None


# ----------------------------------------------------------------------------- gates, publication


def check_quality(table: str, layer: str = "gold", logical_date: dt.date | None = None) -> dict:
    """Run the table's suite on its current Delta version (once per version), record the results
    in ops.quality_results, raise QualityGateFailed if a hard expectation fails."""
    lake = _lake()
    if layer == "gold" and logical_date is None and lake.exists("gold", table):
        logical_date = gold_as_of(lake, table)
    return runner.check_table(lake, layer, table, logical_date)


def publish(logical_date: dt.date | None = None) -> dict:
    """Gold → var/serving/city.duckdb (per table the newest gate-passed version; atomic swap),
    with the cross-library integrity measured first, and the Data Docs site rebuilt after. One
    publication at a time; none when the versions to serve are the ones served."""
    env, city, contracts = settings()
    lake = _lake()
    with locks.held(env, "publish"):
        served = publish_step.publish(env, city, contracts, logical_date)
        if served.get("skipped"):
            return served
        measured = integrity(served["versions"], served["as_of"])
        docs = quality_docs.build_data_docs(env)
        for table in (ops.QUALITY_RESULTS, ops.MANIFEST, ops.LEDGER, ops.RUN_LOG, ops.INTEGRITY):
            lake.compact("ops", table)
        opened = open_data()
    return {**served, **measured, "data_docs": str(docs), **opened}


def open_data() -> dict:
    """公共数据开放: the open-data packages from what was just published (pipelines.open_data);
    refused whole, with the file, row and column, if a value is a natural person's."""
    from pipelines import open_data as open_data_step

    env, city, _ = settings()
    written = open_data_step.export(env, city)
    return {
        "open_data": {f"{w.package}/{w.resource}": {"rows": w.rows, "suppressed": w.suppressed}
                      for w in written},
        "open_data_dir": str(env.open_data_dir),
    }  # fmt: skip


def carry_access_log() -> dict:
    """留痕: the data service's new access-log rows → ops.access_log (pipelines.access_log)."""
    from citylake.service_state import Store
    from pipelines import access_log

    env, _, _ = settings()
    store = Store.for_environment(env)
    try:
        carried = access_log.carry(_lake(), store)
    finally:
        store.dispose()
    _lake().compact("ops", ops.ACCESS_LOG)
    return carried


def integrity(versions: dict[str, int | None], as_of: str | dt.date) -> dict:
    """Measure how the base libraries link up (share of keys that resolve) into ops.integrity,
    on the gold versions given (those just served)."""
    lake = _lake()
    as_of = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
    rows = integrity_step.measure(lake, {k: v for k, v in versions.items() if v is not None}, as_of)
    ops.append(lake, ops.INTEGRITY, rows)
    return {
        "integrity": {r["check"]: {k: r[k] for k in ("resolved", "total", "share")} for r in rows}
    }


# ----------------------------------------------------------------------------- the whole city


def city_plan(tables: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(sources, gold tables in build order) of a run: the whole city, or only the named gold
    tables with the gold tables they read and the sources all of those are built from."""
    if not tables:
        return CITY["sources"], CITY["tables"]
    chosen = catalogue.with_inputs(tables)
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
