"""citylake_ingest_<source_id>: one DAG per source contract in conf/sources/, from the factory.

    ingest_<source> → standardize_<source>  ──►  Asset citylake://silver/<silver table>

On demand only (citylake_city takes every delivery of its day): for a delivery that arrives
after the day's run, or to backfill one source. A new contract in conf/sources/ is a new DAG here,
with no change to this file. Airflow wiring only (see citylake.orchestration.factory); Spark
is imported inside the tasks.
"""

from citylake.orchestration import factory

globals().update(factory.generate("ingest"))
