"""What every gold build function receives: the silver and gold frames it reads, the city, and
the as-of date (the run's logical date). Builders are pure DataFrame → DataFrame functions, so a
test can call one on frames it made itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession

from citylake.config import City


@dataclass
class BuildInputs:
    spark: SparkSession
    city: City
    as_of: dt.date
    silver: dict[str, DataFrame] = field(default_factory=dict)  # silver.<name> → current rows
    gold: dict[str, DataFrame] = field(default_factory=dict)  # gold.<name> → built earlier

    def division_names(self) -> dict[str, str]:
        return {d.code: d.name for d in self.city.divisions}
