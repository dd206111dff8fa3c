"""citylake_build_<library>: one DAG per base library of base_libraries/*.yml, from the factory.

    any Asset its gold tables read (silver, other libraries' gold)
        ──► build_<table> → build_<table> ... (catalog order) ──► Asset citylake://gold/<table>

A new metadata file in base_libraries/ is a new task here, a new library a new DAG, with no change to
this file. Airflow wiring only (see citylake.orchestration); Spark is imported inside the tasks.
"""

from citylake import orchestration

globals().update(orchestration.generate("build"))
