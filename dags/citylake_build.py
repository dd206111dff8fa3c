"""citylake_build: when an on-demand ingest updates a silver Asset, every gold table it reaches.

    any Asset citylake://silver/<table>
        ──► build_<table> (catalog order, after the tables it reads) → quality_<table>
        ──► publish_serving

A table whose inputs did not change is skipped in a second. A new metadata file in
base_libraries/ is a new task here, with no change to this file. Airflow wiring only (see
citylake.orchestration.factory); Spark is imported inside the tasks.
"""

from citylake.orchestration import factory

globals().update(factory.generate("build"))
