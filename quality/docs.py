"""Great Expectations Data Docs: a static site of every table's latest validations.

Each check (quality/runner.py check_table) keeps its GX result, personal data already masked, as
JSON under <data root>/quality/validations/<layer>/<table>/. build_data_docs() loads the newest
few of each table into an in-memory GX context and lets GX's own site builder render them (suite
pages, validation pages, the index) into a fresh folder, which then replaces
<data root>/quality/data_docs. Building once per run, after the checks, means parallel checks never
write the site at the same time; the swap means a reader never sees a half-built site.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import quality.expectations  # noqa: F401  (custom expectation types, for the suite pages)
from citylake.config import Environment
from quality.validation import validations_dir

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SITE = "citylake"
RUNS_PER_TABLE = 3  # the latest validations of each table shown in the docs


def site_dir(env: Environment) -> Path:
    return env.root / "quality" / "data_docs"


def latest_validations(env: Environment, per_table: int = RUNS_PER_TABLE) -> list[Path]:
    found = []
    root = validations_dir(env)
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        found += files[-per_table:]
    return found


def build_data_docs(env: Environment, per_table: int = RUNS_PER_TABLE) -> Path:
    """Render the Data Docs site; returns the path of its index.html."""
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    target = site_dir(env)
    building = target.with_name(f".data_docs.{uuid.uuid4().hex[:8]}")
    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(
        SITE,
        {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(building),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    schema = ExpectationSuiteValidationResultSchema()
    suites_added: set[str] = set()
    for path in latest_validations(env, per_table):
        document = json.loads(path.read_text(encoding="utf-8"))
        result = schema.load(document["result"])
        name = document["suite"]["name"]
        if name not in suites_added:
            context.suites.add(
                gx.ExpectationSuite(name=name, expectations=document["suite"]["expectations"])
            )
            suites_added.add(name)
        meta = result.meta or {}
        run = meta.get("run_id") or {}
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
            run_id=RunIdentifier(run_name=document["run_id"], run_time=run.get("run_time")),
            batch_identifier=document.get("batch", "whole"),
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=[SITE])
    previous = target.with_name(f".data_docs.old.{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(previous)
    building.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    return target / "index.html"
