"""gold table → the function that builds it, as "module:function" so nothing heavy is imported
until a build runs. A test holds this map and base_libraries/catalog.py to the same tables.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from pyspark.sql import DataFrame

from base_libraries.inputs import BuildInputs

BUILDERS = {
    "population__person": "base_libraries.population:build_person",
    "population__household": "base_libraries.population:build_household",
    "legal_entity__entity": "base_libraries.legal_entity:build_entity",
    "spatial__division": "base_libraries.spatial:build_division",
    "spatial__parcel": "base_libraries.spatial:build_parcel",
    "spatial__building": "base_libraries.spatial:build_building",
    "credit__record": "base_libraries.credit:build_record",
    "credit__entity_profile": "base_libraries.credit:build_entity_profile",
    "licence__licence": "base_libraries.licence:build_licence",
    "service__case": "base_libraries.service:build_case",
    "service__hotline_ticket": "base_libraries.service:build_hotline_ticket",
    "service__evaluation": "base_libraries.service:build_evaluation",
}


def builder(table: str) -> Callable[[BuildInputs], DataFrame]:
    module, _, function = BUILDERS[table].partition(":")
    return getattr(importlib.import_module(module), function)
