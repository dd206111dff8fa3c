"""The DAG factory: every CityLake DAG built from conf/sources and the catalogue, each task an
operator around its function in citylake.orchestration.tasks, under the policy of
citylake.orchestration.policy. airflow.sdk is imported inside, so DAG parsing stays cheap."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from citylake import catalogue
from citylake.config import CITY_TIMEZONE
from citylake.orchestration.policy import (
    BUILD_DAG_ID,
    CITY_DAG_ID,
    DAILY_CRON,
    DEFAULT_ARGS,
    QUALITY_DAG_ID,
    SHARING_CRON,
    SHARING_DAG_ID,
    SPARK_POOL,
    START_DATE,
    STEP_TIMEOUT,
    Tag,
    contracts,
    gold_tables,
    ingest_dag_id,
    source_asset_uri,
    source_ids,
)
from citylake.orchestration.tasks import (
    access_log_task,
    build_task,
    contract_violations_fail,
    freshness_task,
    ingest_task,
    publish_task,
    quality_task,
    standardize_task,
)


def _operator(function: Callable, task_id: str, step: str, **kwargs: Any):
    from airflow.sdk import task

    return task(
        task_id=task_id,
        pool=SPARK_POOL,
        execution_timeout=STEP_TIMEOUT[step],
        doc_md=function.__doc__,
        **kwargs,
    )(contract_violations_fail()(function))


def _dag(dag_id: str, schedule: Any, tags: list[Tag], doc: str, **kwargs: Any):
    from airflow.sdk import DAG

    return DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=dict(DEFAULT_ARGS),
        tags=[Tag.CITYLAKE, *tags],
        doc_md=doc,
        **kwargs,
    )


def _daily(cron: str):
    from airflow.sdk import CronDataIntervalTimetable

    # The run for a period starts when the period has ended (data-interval semantics, explicit
    # because a plain "@daily" in Airflow 3 gives the run at 00:00 on D+1 the date D+1).
    return CronDataIntervalTimetable(cron, timezone=CITY_TIMEZONE)


def _ingest_pair(source_id: str, outlets: bool):
    from airflow.sdk import Asset

    ingested = _operator(ingest_task, f"ingest_{source_id}", "ingest")(source_id)
    standardized = _operator(
        standardize_task,
        f"standardize_{source_id}",
        "standardize",
        outlets=[Asset(source_asset_uri(source_id))] if outlets else [],
    )(source_id)
    ingested >> standardized
    return standardized


def _build_gate_publish(standardized: Mapping[str, Any]) -> Any:
    """build_<t> (after the silver and gold it reads) → quality_<t> → publish_serving.

    standardized maps a source id to the task that standardizes it in this DAG; a gold table
    whose sources are not in it starts at once. Returns the publish task.
    """
    from airflow.sdk import TriggerRule

    publish = _operator(
        publish_task, "publish_serving", "publish", trigger_rule=TriggerRule.NONE_FAILED
    )()
    built: dict[str, Any] = {}
    for spec in catalogue.build_order():
        # A weekly source skipped today holds nothing back; a failure upstream still does.
        build = _operator(
            build_task, f"build_{spec.name}", "build", trigger_rule=TriggerRule.NONE_FAILED
        )(spec.name)
        for source in spec.sources:
            if source in standardized:
                standardized[source] >> build
        for gold in spec.gold:
            built[gold] >> build
        built[spec.name] = build
        gate = _operator(quality_task, f"quality_{spec.name}", "quality")(spec.name)
        build >> gate >> publish
    return publish


def ingest_dag(source_id: str):
    """citylake_ingest_<source>: one source on demand, e.g. a re-delivery between daily runs."""
    contract = contracts()[source_id]
    doc = (
        f"**{contract.title}** ({contract.title_en}), {contract.department_name} "
        f"({contract.department_name_en}), delivers {contract.frequency}.\n\n"
        f"landing → bronze.{source_id} → silver.{contract.silver_table} "
        f"(Asset `{source_asset_uri(source_id)}`) + quarantine.{source_id}.\n\n"
        f"On demand only: {CITY_DAG_ID} takes every delivery of its day. Trigger this DAG for "
        "a delivery that arrives after the day's run, or to backfill one source; its Asset "
        f"then schedules {BUILD_DAG_ID}."
    )
    dag = _dag(ingest_dag_id(source_id), None, [Tag.INGEST, Tag(contract.library)], doc)
    with dag:
        _ingest_pair(source_id, outlets=True)
    return dag


def build_dag():
    """citylake_build: when an on-demand ingest updates silver, every gold table that it changes."""
    from airflow.sdk import Asset, AssetAny

    inputs = sorted({source_asset_uri(s) for s in source_ids()})
    doc = (
        "Runs when an on-demand ingest DAG updates a silver Asset. Every gold table is planned in "
        "catalog order; a table whose inputs (silver versions as of the day, code) did not change "
        "is skipped in a second, so only what the new delivery reaches is rebuilt. Then the "
        "gates of what changed and the serving file. It produces no Asset: nothing cascades."
    )
    dag = _dag(BUILD_DAG_ID, AssetAny(*(Asset(u) for u in inputs)), [Tag.BUILD], doc)
    with dag:
        _build_gate_publish({})
    return dag


def quality_publish_dag():
    """citylake_quality_publish: on demand, the gate of every gold table, then the serving file."""
    from airflow.sdk import TriggerRule

    doc = (
        "On demand: the Great Expectations gate of every gold table (a version already judged is "
        "not judged again), then the DuckDB serving file from the newest gate-passed version of "
        "each table, swapped in atomically. A newer version not gated yet waits for its gate."
    )
    dag = _dag(QUALITY_DAG_ID, None, [Tag.QUALITY], doc)
    with dag:
        publish = _operator(
            publish_task, "publish_serving", "publish", trigger_rule=TriggerRule.NONE_FAILED
        )()
        for table in gold_tables():
            _operator(quality_task, f"quality_{table}", "quality")(table) >> publish
    return dag


def city_dag():
    """citylake_city: the whole day for one logical date, every source to the serving file."""
    from airflow.sdk import TriggerRule

    doc = (
        "The city's day: every source's deliveries of the logical date D are ingested and "
        "standardized, every gold table is built as of D (each after the silver and gold tables "
        "it reads), gated, and the serving file published; then the sources that missed their "
        "delivery window are reported. Rerunning or backfilling D reproduces D: ingest skips "
        "files already in ops.ingest_manifest, silver applies batches in delivery order from its "
        "ledger (a late or replayed day is rewound and replayed), gold reads silver as of D.\n\n"
        "It produces no Assets, so no other DAG runs because of it; it is the one pass."
    )
    dag = _dag(CITY_DAG_ID, _daily(DAILY_CRON), [Tag.CITY], doc)
    with dag:
        standardized = {s: _ingest_pair(s, outlets=False) for s in source_ids()}
        freshness = _operator(
            freshness_task, "check_freshness", "freshness", trigger_rule=TriggerRule.ALL_DONE
        )()
        list(standardized.values()) >> freshness
        _build_gate_publish(standardized)
    return dag


def sharing_dag():
    """citylake_sharing: the data service's access log into the lake, every 15 minutes."""
    doc = (
        "留痕: every request to the data service (`citylake serve`), granted or denied, is "
        "committed to its state before the answer leaves; this DAG carries the rows not in "
        "ops.access_log yet into it (ID numbers in paths masked), where publication takes them "
        "into the serving file's access tables for the security officer's dashboard."
    )
    dag = _dag(SHARING_DAG_ID, _daily(SHARING_CRON), [Tag.SHARING], doc)
    with dag:
        _operator(access_log_task, "carry_access_log", "access_log")()
    return dag


def generate(kind: str) -> dict[str, Any]:
    """The DAGs of one kind, by dag_id: what each DAG file puts in its module namespace."""
    if kind == "ingest":
        dags = [ingest_dag(s) for s in source_ids()]
    elif kind == "build":
        dags = [build_dag()]
    elif kind == "quality":
        dags = [quality_publish_dag()]
    elif kind == "city":
        dags = [city_dag()]
    elif kind == "sharing":
        dags = [sharing_dag()]
    else:
        raise ValueError(f"unknown kind of DAG '{kind}' (ingest, build, quality, city, sharing)")
    return {d.dag_id: d for d in dags}
