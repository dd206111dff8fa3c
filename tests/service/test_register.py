"""身份证核验's register: found by binary search, reloaded when a publication replaces the file."""

from __future__ import annotations

import os

import duckdb

from citylake.config import load_consumers, load_contracts, load_environment
from citylake.service import data
from citylake.service.resources import resources

PERSON = resources(load_contracts(), load_consumers())["population__person"]


def _publish(path, people) -> None:
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with duckdb.connect(str(partial)) as con:
        con.execute(
            "CREATE TABLE population__person (id_number VARCHAR, name VARCHAR, is_alive BOOLEAN)"
        )
        con.executemany("INSERT INTO population__person VALUES (?, ?, ?)", people)
    os.replace(partial, path)  # as publication swaps the file in


def test_the_register_answers_and_follows_a_new_publication(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CITYLAKE_DATA_ROOT", str(tmp_path))
    env = load_environment()
    env.restricted_file.parent.mkdir(parents=True)
    _publish(
        env.restricted_file,
        [
            ("45110220050101008X", "韦小宝", True),
            ("451102200501010020", "莫二", False),
            ("452424800101001", "旧号", True),  # a legacy 15-digit number: never a valid answer
        ],
    )
    published = data.Published(env)
    assert data.verify(published, PERSON, "45110220050101008x", "韦小宝")["code"] == "match"
    dead = data.verify(published, PERSON, "451102200501010020", "莫二")
    assert dead == {"result": "一致", "code": "match", "deceased": True}
    assert data.verify(published, PERSON, "451102200501010020", "莫三")["code"] == "mismatch"
    assert data.verify(published, PERSON, "452424800101001", "旧号")["code"] == "invalid_number"
    assert data.verify(published, PERSON, "451102200501010039", "某")["code"] == "not_found"
    assert published.register_loaded()

    _publish(env.restricted_file, [("451102200501010039", "新生", True)])
    assert not published.register_loaded()
    assert data.verify(published, PERSON, "451102200501010039", "新生")["code"] == "match"
    assert data.verify(published, PERSON, "45110220050101008X", "韦小宝")["code"] == "not_found"
