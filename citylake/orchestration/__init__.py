"""Orchestration: the DAGs and the team policy every DAG follows, in three modules: policy (names,
tags, default arguments, retries, alerts), tasks (what each task runs, by reference to its step in
citylake.flow) and factory (the DAGs themselves). Airflow's REST API is spoken by
citylake.airflow_api.

Every DAG is generated here from conf/sources/*.yaml and base_libraries/*.yml; nobody keeps a
list of sources or tables by hand:

    citylake_city                 daily: the whole chain for one logical date (ingest, standardize,
                                  build, gate, publish, freshness), so a backfill of day D redoes D;
                                  it produces no Asset, so no other DAG runs because of it
    citylake_ingest_<source_id>   one per source contract, on demand (a delivery after the day's
                                  run, a one-source backfill): ingest → standardize; updates the
                                  Asset citylake://silver/<silver table>
    citylake_build                scheduled on the silver Assets: every gold table planned in
                                  catalog order (unchanged inputs: skipped), gates, serving file
    citylake_quality_publish      on demand: the gate of every gold table, then the serving file
    citylake_sharing              every 15 minutes: the data service's access log → ops.access_log

One day's work is done once, by one DAG run; the build and publish steps are idempotent and
serialized by locks (citylake.locks), so two DAGs reaching them at once cannot interleave.

The DAG files in dags/ call factory.generate and nothing else. The package is imported when Airflow
parses them, so it stays cheap: configuration and the catalogue only; airflow.sdk is imported inside
the factory, and the pipelines (Spark, Great Expectations) only inside a running task.

Policy (policy.py), written once and tested: the tag enum, the default arguments (owner, retries with
exponential backoff, execution timeout, failure callbacks), the `spark` pool, which errors are worth
a retry (none of CityLakeError: a contract violation fails the same way the next time), and the
alert channel (a log file, an optional webhook, and a row in ops.run_log).
"""
