"""Gold → the serving files, write-audit-publish style.

Two DuckDB files come out of one publication, each built beside the old one and swapped in with
os.replace (DuckDB forbids a writer while Superset's readers hold a file):

- <data root>/serving/city.duckdb: every gold table of base_libraries/*.yml with personal data
  masked (4511**********123X, 张*, 138****5678, addresses cut to the township or street), the marts
  the dashboards read (by district, month and department), and the data-health tables from ops.*
  and quarantine.*. Everyone who may see a dashboard reaches this file.
- <data root>/serving/restricted/city_clear.duckdb: the same gold tables in clear, for the entitled
  roles only (data engineer, admin). Superset registers it as a second database that only those
  roles may use; the folder is mode 700.

Only a gold version that passed its quality gate is published: the gate's results
(ops.quality_results, with the Delta version they checked) are read here, and a table whose
current version has no passing gate stops publication with both files untouched. A gold table
not built yet is published empty (with its catalog columns) and reported as missing, so the
dashboards open and say 0 rather than fail.

This module is the publication: which versions, the gate, the atomic swap. The SQL that fills
the files is pipelines.serving (gold, masks, marts) and pipelines.health (ops.* → health_*).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import duckdb

from citylake import secret_files
from citylake.catalogue import GOLD_TABLES
from citylake.config import City, Environment, SourceContract
from citylake.errors import CityLakeError
from citylake.lake import (
    Scan,
    delta_relation,
    delta_tables,
    latest_version,
    load_extensions,
    reader,
    scan_of,
)
from pipelines.serving import build_serving

# ----------------------------------------------------------------------------- gates and versions


class PublicationBlocked(CityLakeError, RuntimeError):
    """A gold table has no passing quality gate for its current version."""


def delta_scan(env: Environment, versions: dict[str, int | None] | None = None) -> Scan:
    """Relations over the lake's Delta tables (None where a table does not exist); a gold table
    named in `versions` is read at that version, whatever has been committed since."""
    versions = versions or {}

    def scan(layer: str, name: str) -> str | None:
        return scan_of(env, layer, name, versions.get(name) if layer == "gold" else None)

    return scan


def gate_passed(con: duckdb.DuckDBPyConnection, scan: Scan) -> dict[str, list[int]]:
    """For each gold table, every Delta version whose every hard expectation passed, ascending."""
    results = scan("ops", "quality_results")
    if results is None:
        return {}
    rows = con.execute(f"""
        SELECT table_name, list(DISTINCT table_version ORDER BY table_version) FROM (
            SELECT table_name, table_version, run_id
            FROM {results} WHERE layer = 'gold'
            GROUP BY ALL
            HAVING bool_and(success OR severity = 'soft')
        ) GROUP BY table_name
    """).fetchall()
    return {name: list(versions) for name, versions in rows}


# ----------------------------------------------------------------------------- the publication


def restricted_file(env: Environment) -> Path:
    return env.restricted_file


def serving_pepper(env: Environment) -> str:
    """The secret mixed into <column>_key hashes, generated once (an unsalted SHA-256 of an
    18-digit ID number is reversed by trying every birth date and sequence number)."""
    return secret_files.read_or_create(env.secrets / "serving_pepper", 32)


def default_as_of(con: duckdb.DuckDBPyConnection, scan: Scan) -> dt.date:
    """The newest delivery date in ops.ingest_manifest: 'this month' is the data's month."""
    manifest = scan("ops", "ingest_manifest")
    if manifest is not None:
        newest = con.execute(f"SELECT max(delivery_date) FROM {manifest}").fetchone()[0]
        if newest is not None:
            return newest
    return dt.date.today()


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.building")
    staging.unlink(missing_ok=True)
    staging.with_name(staging.name + ".wal").unlink(missing_ok=True)
    return staging


def served_state(env: Environment, versions: dict[str, int | None]) -> dict:
    """What a publication is made of: the gold versions served and the versions of every ops and
    quarantine table the health tables read. The same state twice needs no new file."""
    state = {"gold": versions}
    for layer in ("ops", "quarantine"):
        state[layer] = {
            table.name: latest_version(table) for table in delta_tables(env.lake_root / layer)
        }
    return state


def _served_before(target: Path) -> dict | None:
    if not target.exists():
        return None
    try:
        with duckdb.connect(str(target), read_only=True) as con:
            (text,) = con.execute("SELECT state_json FROM serving_info").fetchone()
        return json.loads(text)
    except (duckdb.Error, TypeError, ValueError):
        return None  # an older file without the state, or a damaged one: publish anew


def served_versions(
    env: Environment,
) -> tuple[dict[str, int | None], list[str], dict[str, list[int]]]:
    """Per gold table the version to serve: the newest one whose gate passed (a newer version
    not judged yet waits for its own gate); None for a table not built yet. Also the tables
    still missing, and per table the gate-passed versions up to the one served (what Delta
    Sharing may read). Raises PublicationBlocked for a table of which no version ever passed."""
    scan = delta_scan(env)
    with reader() as con:
        passed = gate_passed(con, scan)
    versions: dict[str, int | None] = {}
    missing = []
    for table in GOLD_TABLES:
        current = latest_version(env.table_path("gold", table.name))
        if current is None:
            versions[table.name] = None
            missing.append(table.name)
            continue
        if table.name not in passed:
            raise PublicationBlocked(
                f"gold.{table.name}: no version has passed its quality gate yet (newest: "
                f"{current}); the serving file is unchanged"
            )
        versions[table.name] = passed[table.name][-1]
    readable = {name: passed[name] for name, version in versions.items() if version is not None}
    return versions, missing, readable


def publish(
    env: Environment,
    city: City,
    contracts: dict[str, SourceContract] | None = None,
    as_of: dt.date | None = None,
) -> dict:
    """Build new serving files from gate-passed gold and swap them in; returns what was served.

    The as-of date shown ('this month' on the dashboards) is the newest as-of date of the gold
    versions served, else `as_of`, else the newest delivery. Nothing is rebuilt when the state to
    serve (served_state) is the one the current file was built from."""
    from citylake.lake import citylake_metadata, commit_info

    if contracts is None:
        from citylake.config import load_contracts

        contracts = load_contracts()
    started = time.perf_counter()
    target, clear_target = env.serving_file, restricted_file(env)
    versions, missing, readable = served_versions(env)
    state = served_state(env, versions)
    if _served_before(target) == state and restricted_file(env).exists():
        return {
            "serving_file": str(target),
            "versions": versions,
            "missing": missing,
            "skipped": True,
            "reason": "the gate-passed gold versions and the ops tables are those already served",
            "as_of": None,
        }
    days = [
        citylake_metadata(commit_info(env.table_path("gold", name), version)).get("as_of")
        for name, version in versions.items()
        if version is not None
    ]
    days = [dt.date.fromisoformat(d) for d in days if d]
    scan = delta_scan(env, versions)
    staging, clear_staging = _staging(target), _staging(clear_target)
    clear_target.parent.chmod(0o700)
    con = duckdb.connect(str(staging))
    clear = duckdb.connect(str(clear_staging))
    try:
        load_extensions(con, "delta")
        load_extensions(clear, "delta")
        shown = max(days) if days else as_of or default_as_of(con, scan)
        counts = build_serving(
            con, scan, city, contracts, shown, serving_pepper(env), versions, clear
        )
        # What Delta Sharing may read of each table (citylake.service.sharing).
        con.execute("CREATE TABLE serving_versions (table_name VARCHAR, gold_version BIGINT)")
        con.executemany(
            "INSERT INTO serving_versions VALUES (?, ?)",
            [(name, v) for name, found in readable.items() for v in found],
        )
        con.execute("ALTER TABLE serving_info ADD COLUMN state_json VARCHAR")
        con.execute("UPDATE serving_info SET state_json = ?", [json.dumps(state, sort_keys=True)])
        con.execute("CHECKPOINT")
        clear.execute("CHECKPOINT")
    except BaseException:
        con.close()
        clear.close()
        staging.unlink(missing_ok=True)
        clear_staging.unlink(missing_ok=True)
        raise
    con.close()
    clear.close()
    clear_staging.chmod(0o600)
    os.replace(staging, target)
    os.replace(clear_staging, clear_target)
    return {
        "serving_file": str(target),
        "restricted_file": str(clear_target),
        "tables": counts,
        "versions": versions,
        "missing": missing,
        "as_of": shown.isoformat(),
        "skipped": False,
        "seconds": round(time.perf_counter() - started, 3),
    }


# ----------------------------------------------------------------------------- analysts' SQL


def lake_connection(
    env: Environment, layers: tuple[str, ...] = ("gold",)
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per Delta table of the given layers (gold.<table>, ...),
    the delta extension loaded from its PyPI package. What `citylake sql` runs on:

        con = lake_connection(env)
        con.sql("SELECT division_name, count(*) FROM gold.population__person GROUP BY 1").show()
    """
    con = duckdb.connect()
    load_extensions(con, "delta", "spatial")
    for layer in layers:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{layer}"')
        for table in delta_tables(env.lake_root / layer):
            con.execute(
                f'CREATE VIEW "{layer}"."{table.name}" AS SELECT * FROM {delta_relation(table)}'
            )
    return con


__all__ = ["PublicationBlocked", "lake_connection", "publish"]


def main(argv: list[str] | None = None) -> None:
    """`python -m pipelines.publish sql "SELECT ..."`: DuckDB over the lake's Delta tables."""
    import argparse

    from citylake.config import settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["sql"])
    parser.add_argument("query", help="SQL over gold.<table> (and --layers' schemas)")
    parser.add_argument("--layers", default="gold", help="comma-separated, e.g. gold,silver,ops")
    args = parser.parse_args(argv)
    env, _, _ = settings()
    with lake_connection(env, tuple(args.layers.split(","))) as con:
        con.sql(args.query).show(max_rows=200, max_width=200)


if __name__ == "__main__":
    main()
