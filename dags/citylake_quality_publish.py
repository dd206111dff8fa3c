"""citylake_quality_publish: the quality gate of every gold table that changed, then publication.

    any Asset citylake://gold/<table> ──► quality_<table> (those that changed) ──► publish_serving

Write, audit, publish: the serving file takes only gold versions whose gate passed. Airflow wiring only
(see citylake.orchestration.factory); Great Expectations is imported inside the tasks.
"""

from citylake.orchestration import factory

globals().update(factory.generate("quality"))
