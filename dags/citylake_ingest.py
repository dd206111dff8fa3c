"""citylake_ingest_<source_id>: one DAG per source contract in conf/sources/, from the factory.

    ingest_<source> → standardize_<source>  ──►  Asset citylake://silver/<silver table>

Scheduled on the source's delivery frequency (daily, weekly, monthly, in Asia/Shanghai) and
runnable on demand for any date. A new contract in conf/sources/ is a new DAG here, with no change
to this file. Airflow wiring only (see citylake.orchestration); Spark is imported inside the tasks.
"""

from citylake import orchestration

globals().update(orchestration.generate("ingest"))
