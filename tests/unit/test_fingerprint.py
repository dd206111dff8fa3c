"""`citylake checksums`: equal contents fingerprint equal, whatever the row order or the files;
any changed value, added row or lost row changes the digest; run-time columns do not count."""

from __future__ import annotations

import duckdb
import pyarrow as pa
from deltalake import write_deltalake

from citylake.lake import delta_relation, duckdb_connection, fingerprint, serving_fingerprints

ROWS = {
    "id_number": ["11010519491231002X", "450103199001011234", "451102198807070019"],
    "name": ["张三", "李四", None],
    "_ingested_at": ["2026-12-01 08:00", "2026-12-01 08:00", "2026-12-01 08:00"],
}


def _delta(path, rows: dict, mode: str = "overwrite"):
    schema = pa.schema([(name, pa.string()) for name in rows])
    write_deltalake(path, pa.table(rows, schema=schema), mode=mode)
    return delta_relation(path)


def test_same_rows_in_another_order_and_other_files_fingerprint_the_same(tmp_path):
    reordered = {k: list(reversed(v)) for k, v in ROWS.items()}
    later = dict(reordered, _ingested_at=["2026-12-02 09:30"] * 3)  # ingested again, later
    with duckdb_connection() as con:
        one = fingerprint(con, _delta(tmp_path / "a", ROWS))
        # the same rows in two commits (two files), in another order, ingested at another time
        _delta(tmp_path / "b", {k: v[:1] for k, v in later.items()})
        other = fingerprint(
            con, _delta(tmp_path / "b", {k: v[1:] for k, v in later.items()}, "append")
        )
        assert one == other
        assert one[0] == 3
        # but with ingest times counted, they differ
        assert fingerprint(con, delta_relation(tmp_path / "a"), exclude=()) != fingerprint(
            con, delta_relation(tmp_path / "b"), exclude=()
        )


def test_a_changed_value_a_null_or_a_lost_row_changes_the_digest(tmp_path):
    with duckdb_connection() as con:
        base = fingerprint(con, _delta(tmp_path / "a", ROWS))
        changed = dict(ROWS, name=["张三", "李四", "王五"])  # a null filled in
        assert fingerprint(con, _delta(tmp_path / "b", changed)) != base
        lost = {k: v[:2] for k, v in ROWS.items()}
        assert fingerprint(con, _delta(tmp_path / "c", lost))[0] == 2
        doubled = {k: v + v[:1] for k, v in ROWS.items()}  # a duplicate row counts
        assert fingerprint(con, _delta(tmp_path / "d", doubled)) != base


def test_serving_file_leaves_out_the_publication_time_only_where_it_is_run_time(tmp_path):
    def serve(path, published_at: str, finished_at: str):
        with duckdb.connect(str(path)) as con:
            con.execute(f"CREATE TABLE serving_info AS SELECT DATE '2026-12-01' AS as_of,"
                        f" TIMESTAMP '{published_at}' AS published_at")  # fmt: skip
            con.execute(f"CREATE TABLE service__case AS SELECT 'c1' AS case_id,"
                        f" TIMESTAMP '{finished_at}' AS finished_at")  # fmt: skip
            con.execute("CREATE VIEW open_cases AS SELECT * FROM service__case")
        return serving_fingerprints(path)

    first = serve(tmp_path / "a.duckdb", "2026-12-02 01:00", "2026-11-30 10:00")
    again = serve(tmp_path / "b.duckdb", "2026-12-02 05:00", "2026-11-30 10:00")
    assert set(first) == {"serving.serving_info", "serving.service__case", "serving.open_cases"}
    assert first == again  # published later, the same contents
    # finished_at is a case's data, not a run time: a different value is a different table
    moved = serve(tmp_path / "c.duckdb", "2026-12-02 01:00", "2026-11-30 11:00")
    assert moved["serving.service__case"] != first["serving.service__case"]
    assert moved["serving.open_cases"] != first["serving.open_cases"]
