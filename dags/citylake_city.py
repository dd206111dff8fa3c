"""citylake_city, the daily DAG: the city's day, every source to the serving file, for one logical date.

    ingest_<s> → standardize_<s> ─┬─► build_<t> (after its inputs) → quality_<t> ─► publish_serving
                                  └─► check_freshness (sources that missed their delivery window)

A backfill or rerun of day D reproduces D without duplicating a row. Airflow wiring only (see
citylake.orchestration.factory); Spark is imported inside the tasks.
"""

from citylake.orchestration import factory

globals().update(factory.generate("city"))
