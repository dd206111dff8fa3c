"""citylake_sharing, a DAG every 15 minutes: 留痕, the data service's access log carried into the lake.

    access log of `citylake serve` (its state database) ──► carry_access_log ──► ops.access_log

Airflow wiring only (see citylake.orchestration.factory).
"""

from citylake.orchestration import factory

globals().update(factory.generate("sharing"))
