"""gold table → the function that builds it, by one naming rule: gold.<library>__<entity> is built
by base_libraries.<library>:build_<entity> (GoldTable.builder). Nothing heavy is imported until a
build runs; a test resolves every table's builder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from pyspark.sql import DataFrame

from base_libraries.inputs import BuildInputs
from citylake.catalogue import gold_table
from citylake.errors import CityLakeError


def builder(table: str) -> Callable[[BuildInputs], DataFrame]:
    spec = gold_table(table)
    module, _, function = spec.builder.partition(":")
    found = getattr(importlib.import_module(module), function, None)
    if not callable(found):
        raise CityLakeError(
            f"gold.{table} ({spec.path.name}) is built by {spec.builder}, which does not exist"
        )
    return found
