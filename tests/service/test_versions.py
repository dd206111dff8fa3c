"""Which versions of a table Delta Sharing may read: those publication listed, or the served one."""

from __future__ import annotations

import duckdb

from citylake.config import load_environment
from citylake.service import data


def _publish(env, served: int, listed: list[int] | None) -> None:
    env.restricted_file.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(env.restricted_file)).close()
    with duckdb.connect(str(env.serving_file)) as con:
        con.execute("CREATE TABLE serving_tables (table_name VARCHAR, gold_version BIGINT)")
        con.execute("INSERT INTO serving_tables VALUES ('licence__licence', ?)", [served])
        con.execute("INSERT INTO serving_tables VALUES ('spatial__parcel', NULL)")
        if listed is not None:
            con.execute("CREATE TABLE serving_versions (table_name VARCHAR, gold_version BIGINT)")
            con.executemany(
                "INSERT INTO serving_versions VALUES ('licence__licence', ?)", [[v] for v in listed]
            )


def test_only_the_gate_passed_versions_publication_listed_are_readable(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYLAKE_DATA_ROOT", str(tmp_path))
    env = load_environment()
    _publish(env, served=4, listed=[0, 1, 4])  # versions 2 and 3 failed their gate
    published = data.Published(env)
    assert published.version("licence__licence") == 4
    assert published.readable_versions("licence__licence") == {0, 1, 4}
    assert published.readable_versions("spatial__parcel") == frozenset()  # not built yet


def test_a_file_from_before_the_list_gives_the_served_version_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYLAKE_DATA_ROOT", str(tmp_path))
    env = load_environment()
    _publish(env, served=4, listed=None)
    assert data.Published(env).readable_versions("licence__licence") == {4}
