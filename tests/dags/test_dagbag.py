"""DAG integrity and team policy, without any Airflow service: every DAG imports, cheaply, follows
the rules in citylake.orchestration.policy (owner, tags, retries, timeouts, alerts, pool), and its Assets
and tasks are exactly what conf/sources and base_libraries/*.yml say, computed here again
from those files rather than from the factory."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from citylake import catalogue
from citylake.config import load_contracts
from citylake.errors import CityLakeError
from citylake.orchestration import policy, tasks

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
CONTRACTS = load_contracts()
MAX_IMPORT_S = 1.0
ROLE = {
    "ingest": "ingest",
    "build": "build",
    "quality_publish": "quality",
    "city": "city",
    "sharing": "sharing",
}


def _dags(dagbag):
    return sorted(dagbag.dags.values(), key=lambda d: d.dag_id)


def _uris(dag) -> set[str]:
    condition = getattr(dag.timetable, "asset_condition", None)
    return {asset.uri for asset in getattr(condition, "objects", ())}


def _silver_uri(source_id: str) -> str:
    return f"citylake://silver/{CONTRACTS[source_id].silver_table}"


def test_dag_folder_has_dags():
    assert {p.stem for p in DAG_FILES} == {
        "citylake_ingest",
        "citylake_build",
        "citylake_quality_publish",
        "citylake_city",
        "citylake_sharing",
    }


def test_every_dag_imports_one_per_source_and_the_four_of_the_city(dagbag):
    assert dagbag.import_errors == {}
    expected = {f"citylake_ingest_{s}" for s in CONTRACTS} | {
        "citylake_build",
        "citylake_quality_publish",
        "citylake_city",
        "citylake_sharing",
    }
    assert set(dagbag.dags) == expected


def test_dag_ids_begin_with_their_file_name(dagbag):
    for dag in _dags(dagbag):
        assert dag.dag_id.startswith(Path(dag.fileloc).stem), dag.dag_id


def test_dag_files_import_fast_and_without_spark():
    """Each DAG file, imported after airflow.sdk, costs < 1 s of CPU and no heavy module.

    A fresh interpreter, so nothing another test imported hides a slow or heavy import; CPU time,
    not wall time, so a busy machine (Spark jobs next door on two cores) does not make it flaky.
    """
    probe = """
import importlib.util, json, sys, time
from airflow.sdk import Asset, dag, task  # what every DAG file needs anyway; not counted
heavy = ("pyspark", "great_expectations", "pipelines", "duckdb", "pandas", "quality")
results = {}
for path in sys.argv[1:]:
    before = set(sys.modules)
    start = time.process_time()
    spec = importlib.util.spec_from_file_location(f"dag_{len(results)}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    seconds = time.process_time() - start
    new = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(heavy))
    results[path] = {"seconds": seconds, "heavy": new}
print(json.dumps(results))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe, *map(str, DAG_FILES)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=True,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(DAG_FILES)
    for path, result in results.items():
        assert result["heavy"] == [], f"{path} imports {result['heavy']} at parse time"
        assert result["seconds"] < MAX_IMPORT_S, f"{path} took {result['seconds']:.2f} s to import"


def test_owner_tags_and_catchup(dagbag):
    tags = {t.value for t in policy.Tag}
    for dag in _dags(dagbag):
        assert dag.owner == policy.OWNER
        assert set(dag.tags) <= tags, f"{dag.dag_id}: tags {set(dag.tags) - tags} not in policy.Tag"
        assert policy.Tag.CITYLAKE.value in dag.tags
        role = ROLE[Path(dag.fileloc).stem.removeprefix("citylake_")]
        assert set(dag.tags) & {t.value for t in policy.ROLE_TAGS} == {role}, dag.dag_id
        assert dag.catchup is False
        assert dag.max_active_runs == 1


def test_every_task_retries_alerts_times_out_and_uses_the_spark_pool(dagbag):
    for dag in _dags(dagbag):
        for task in dag.tasks:
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.owner == policy.OWNER, where
            assert task.retries >= 1, where
            assert task.retry_exponential_backoff, where
            assert task.execution_timeout is not None, where
            assert task.execution_timeout <= dt.timedelta(hours=1), where
            assert policy.alert_on_failure in (task.on_failure_callback or []), where
            assert policy.record_retry in (task.on_retry_callback or []), where
            assert task.pool == policy.SPARK_POOL, where


def test_no_cycles(dagbag):
    for dag in _dags(dagbag):
        dag.check_cycle()
        assert len(dag.topological_sort()) == len(dag.tasks)


def test_an_ingest_dag_per_source_on_demand(dagbag):
    for source_id, contract in CONTRACTS.items():
        dag = dagbag.dags[f"citylake_ingest_{source_id}"]
        assert contract.library in dag.tags
        assert type(dag.timetable).__name__ == "NullTimetable"  # the city DAG takes the day
        ingest, standardize = f"ingest_{source_id}", f"standardize_{source_id}"
        assert set(dag.task_ids) == {ingest, standardize}
        assert dag.get_task(ingest).downstream_task_ids == {standardize}
        assert [o.uri for o in dag.get_task(standardize).outlets] == [_silver_uri(source_id)]
        assert dag.get_task(ingest).outlets == []


def _assert_builds_gate_and_publish(dag, standardized: set[str]):
    """build_<t> after what it reads, its gate after it, publication after every gate."""
    for table in catalogue.GOLD_TABLES:
        build = dag.get_task(f"build_{table.name}")
        # a skipped weekly source holds nothing back (none_failed), a failed one does
        assert build.upstream_task_ids == {
            f"standardize_{s}" for s in table.sources if s in standardized
        } | {f"build_{g}" for g in table.gold}
        assert build.trigger_rule == "none_failed"
        assert build.outlets == []
        assert build.downstream_task_ids >= {f"quality_{table.name}"}
        quality = dag.get_task(f"quality_{table.name}")
        assert quality.downstream_task_ids == {"publish_serving"}
    publish = dag.get_task("publish_serving")
    assert publish.upstream_task_ids == {f"quality_{t.name}" for t in catalogue.GOLD_TABLES}
    assert publish.trigger_rule == "none_failed"


def test_one_build_dag_on_the_silver_assets_of_the_on_demand_ingests(dagbag):
    dag = dagbag.dags["citylake_build"]
    assert _uris(dag) == {_silver_uri(s) for s in CONTRACTS}
    _assert_builds_gate_and_publish(dag, standardized=set())
    assert set(dag.task_ids) == {"publish_serving"} | {
        f"{step}_{t.name}" for t in catalogue.GOLD_TABLES for step in ("build", "quality")
    }


def test_no_asset_cascade_one_run_does_the_day_once(dagbag):
    # Only the on-demand ingest DAGs produce Assets, only the build DAG consumes them: a run of
    # the city DAG triggers nothing, and nothing the build DAG does triggers it again.
    for dag in _dags(dagbag):
        produced = {o.uri for t in dag.tasks for o in t.outlets}
        if dag.dag_id.startswith("citylake_ingest_"):
            assert produced == {_silver_uri(dag.dag_id.removeprefix("citylake_ingest_"))}
        else:
            assert produced == set(), dag.dag_id
        if dag.dag_id != "citylake_build":
            assert _uris(dag) == set(), dag.dag_id


def test_quality_publish_gates_every_gold_table_on_demand(dagbag):
    dag = dagbag.dags["citylake_quality_publish"]
    assert type(dag.timetable).__name__ == "NullTimetable"
    publish = dag.get_task("publish_serving")
    assert publish.upstream_task_ids == {f"quality_{t.name}" for t in catalogue.GOLD_TABLES}
    assert publish.trigger_rule == "none_failed"


def test_the_city_dag_runs_the_whole_chain(dagbag):
    dag = dagbag.dags["citylake_city"]
    assert dag.timetable.expression == "0 0 * * *"
    expected = {"publish_serving", "check_freshness"}
    for source_id in CONTRACTS:
        expected |= {f"ingest_{source_id}", f"standardize_{source_id}"}
    for table in catalogue.GOLD_TABLES:
        expected |= {f"build_{table.name}", f"quality_{table.name}"}
    _assert_builds_gate_and_publish(dag, standardized=set(CONTRACTS))
    assert set(dag.task_ids) == expected
    assert dag.get_task("check_freshness").trigger_rule == "all_done"
    assert dag.get_task("check_freshness").upstream_task_ids == {
        f"standardize_{s}" for s in CONTRACTS
    }


# ----------------------------------------------------------------------------- run dates


@pytest.mark.parametrize(
    ("logical_date", "expected"),
    [
        # midnight in 贺州 is 16:00 UTC the day before
        (dt.datetime(2026, 11, 26, 16, 0, tzinfo=dt.UTC), dt.date(2026, 11, 27)),
        # `airflow dags test <dag> 2026-11-27` gives UTC midnight: 08:00 in 贺州, same day
        (dt.datetime(2026, 11, 27, 0, 0, tzinfo=dt.UTC), dt.date(2026, 11, 27)),
        (dt.datetime(2026, 11, 27, 15, 59, tzinfo=dt.UTC), dt.date(2026, 11, 27)),
        (dt.datetime(2026, 11, 27, 16, 0, tzinfo=dt.UTC), dt.date(2026, 11, 28)),
    ],
)
def test_partition_date_is_the_logical_date_in_the_city(logical_date, expected):
    assert tasks.partition_date({"logical_date": logical_date}) == expected


def test_partition_date_is_a_plain_date_even_from_pendulum():
    # PySpark's DateType refuses pendulum.Date, which is what pendulum's .date() returns.
    import pendulum

    day = tasks.partition_date({"logical_date": pendulum.datetime(2026, 11, 26, 16, tz="UTC")})
    assert type(day) is dt.date
    assert day == dt.date(2026, 11, 27)


def test_partition_date_of_a_run_without_logical_date_is_its_run_after():
    run = SimpleNamespace(run_after=dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC))
    assert tasks.partition_date({"logical_date": None, "dag_run": run}) == dt.date(2026, 11, 27)


def _event(uri: str, day: str | None, dag_id: str = "citylake_ingest_x"):
    return SimpleNamespace(
        asset=SimpleNamespace(uri=uri), extra={"date": day} if day else {}, source_dag_id=dag_id
    )


def test_an_asset_triggered_run_takes_the_newest_day_its_events_name():
    events = {
        "a": [_event("citylake://silver/person", "2026-11-20")],
        "b": [_event("citylake://silver/x", "2026-11-27"), _event("citylake://silver/x", None)],
    }
    run = SimpleNamespace(run_after=dt.datetime(2026, 12, 5, tzinfo=dt.UTC))
    context = {"logical_date": None, "dag_run": run, "triggering_asset_events": events}
    assert tasks.partition_date(context) == dt.date(2026, 11, 27)


# ----------------------------------------------------------------------------- errors and alerts


class _Broken(CityLakeError):
    pass


def test_contract_violations_are_not_transient():
    assert policy.is_transient(ConnectionResetError("Spark Connect went away"))
    assert policy.is_transient(TimeoutError())
    assert not policy.is_transient(_Broken("row 3, column id_number"))
    from airflow.sdk.exceptions import AirflowFailException

    try:
        try:
            raise _Broken("row 3")
        except _Broken as error:
            raise AirflowFailException(str(error)) from error
    except AirflowFailException as wrapped:
        assert not policy.is_transient(wrapped)


def test_a_contract_violation_fails_the_task_at_once(monkeypatch):
    """A task (as the factory wraps it) turns a CityLakeError into AirflowFailException (no
    retry); other errors pass as they are, to be retried."""
    pytest.importorskip("citylake.flow", reason="citylake.flow not importable here")
    from airflow.sdk.exceptions import AirflowFailException

    from citylake import flow
    from pipelines.delivery import DeliveryError

    def broken(*_):
        raise DeliveryError("landing/x.csv: line 3, column 身份证号: not 18 characters")

    def flaky(*_):
        raise ConnectionResetError("Spark Connect went away")

    task = tasks.contract_violations_fail()(tasks.quality_task)  # what _operator runs
    monkeypatch.setattr(flow, "check_quality", broken)
    with pytest.raises(AirflowFailException, match="DeliveryError: landing/x.csv: line 3"):
        task("population__person")
    monkeypatch.setattr(flow, "check_quality", flaky)
    with pytest.raises(ConnectionResetError):
        task("population__person")


def test_a_contract_violation_outside_the_step_fails_at_once_too():
    """Every task callable is guarded, e.g. a broken contract met while choosing the days."""
    from airflow.sdk.exceptions import AirflowFailException

    from citylake.config import ConfigError

    @tasks.contract_violations_fail()
    def task_body():
        raise ConfigError("conf/sources/x.yaml: key 'columns.8.future_allowed': not permitted")

    with pytest.raises(AirflowFailException, match="ConfigError: conf/sources/x.yaml") as failed:
        task_body()
    # the alert names the violation, not Airflow's wrapper around it
    record = policy._alert_record(_failed_context(failed.value), "failed")
    assert record["error_type"] == "ConfigError"
    assert record["is_transient"] is False


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        _Receiver.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_):
        pass


@pytest.fixture
def webhook():
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", _Receiver.received
    server.shutdown()
    server.server_close()


def _failed_context(exception):
    ti = SimpleNamespace(dag_id="citylake_city", task_id="ingest_x", run_id="r1", try_number=3)
    return {"ti": ti, "exception": exception, "logical_date": None}


def test_an_alert_goes_to_the_log_file_and_the_webhook(tmp_path, monkeypatch, webhook):
    url, received = webhook
    alerts = tmp_path / "alerts" / "city.log"
    monkeypatch.setenv(policy.ALERT_LOG_VARIABLE, str(alerts))
    monkeypatch.setenv(policy.ALERT_WEBHOOK_VARIABLE, url)
    monkeypatch.setattr(policy, "_record_run_log", lambda record: None)  # Delta: see below
    policy.alert_on_failure(_failed_context(_Broken("no file\ndelivered")))
    policy.alert_on_failure(_failed_context(None))
    lines = alerts.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    fields = lines[0].split("\t")
    assert fields[1:6] == ["FAILED", "citylake_city", "ingest_x", "r1", "try=3"]
    assert fields[6] == "_Broken: no file delivered"
    assert len(received) == 2
    assert received[0]["dag_id"] == "citylake_city"
    assert received[0]["task_id"] == "ingest_x"
    assert received[0]["error"] == "no file delivered"
    assert received[0]["is_transient"] is False
    assert received[0]["state"] == "failed"


def test_a_silent_webhook_does_not_hide_the_failure(tmp_path, monkeypatch):
    monkeypatch.setenv(policy.ALERT_LOG_VARIABLE, str(tmp_path / "alerts.log"))
    monkeypatch.setenv(policy.ALERT_WEBHOOK_VARIABLE, "http://127.0.0.1:9/nobody")
    monkeypatch.setattr(policy, "_record_run_log", lambda record: None)
    policy.alert_on_failure(_failed_context(ValueError("boom")))
    assert "ValueError: boom" in (tmp_path / "alerts.log").read_text(encoding="utf-8")


@pytest.mark.spark
def test_failures_and_retries_land_in_ops_run_log(spark, data_root, monkeypatch):
    monkeypatch.delenv(policy.ALERT_WEBHOOK_VARIABLE, raising=False)
    monkeypatch.delenv(policy.ALERT_LOG_VARIABLE, raising=False)
    policy.record_retry(_failed_context(ConnectionResetError("Spark Connect went away")))
    policy.alert_on_failure(_failed_context(_Broken("row 3, column id_number")))
    path = data_root / "lake" / "ops" / policy.RUN_LOG_TABLE
    rows = spark.read.format("delta").load(str(path)).orderBy("state").collect()
    assert [(r.state, r.is_transient, r.error_type) for r in rows] == [
        ("failed", False, "_Broken"),
        ("up_for_retry", True, "ConnectionResetError"),
    ]
    assert {(r.dag_id, r.task_id, r.run_id, r.try_number) for r in rows} == {
        ("citylake_city", "ingest_x", "r1", 3)
    }
    assert (data_root / "log" / "alerts.log").read_text(encoding="utf-8").count("\n") == 1


# ----------------------------------------------------------------------------- freshness


def test_the_freshness_check_alerts_each_overdue_source(tmp_path, monkeypatch, webhook):
    """No delivery ever (an empty ops.ingest_manifest): every source is overdue, each alerted."""
    pytest.importorskip("quality.freshness", reason="quality.freshness not importable here")
    url, received = webhook
    monkeypatch.setenv("CITYLAKE_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv(policy.ALERT_WEBHOOK_VARIABLE, url)
    monkeypatch.delenv(policy.ALERT_LOG_VARIABLE, raising=False)
    ti = SimpleNamespace(
        dag_id="citylake_city", task_id="check_freshness", run_id="r", try_number=1
    )
    context = {"logical_date": dt.datetime(2026, 11, 26, 16, tzinfo=dt.UTC), "ti": ti}
    monkeypatch.setattr(tasks, "_context", lambda: context)
    overdue = tasks.freshness_task()
    assert {s["source_id"] for s in overdue} == set(CONTRACTS)
    assert all(s["last_delivery"] is None for s in overdue)
    json.dumps(overdue)  # an XCom: JSON-able
    assert len(received) == len(CONTRACTS)
    assert {r["state"] for r in received} == {"overdue"}
    lines = (tmp_path / "log" / "alerts.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(CONTRACTS)
    assert all("\tOVERDUE\tcitylake_city\tcheck_freshness\t" in line for line in lines)


def test_a_weekly_source_without_delivery_is_skipped_a_daily_one_is_not(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    monkeypatch.setenv("CITYLAKE_DATA_ROOT", str(tmp_path))
    by_frequency = {c.frequency: s for s, c in sorted(CONTRACTS.items(), reverse=True)}
    day = dt.date(2026, 11, 27)
    # daily: not skipped here; flow.ingest itself fails on the missing delivery, and alerts
    assert tasks.skip_unless_delivered(by_frequency["daily"], day) is None
    with pytest.raises(AirflowSkipException, match="delivers weekly"):
        tasks.skip_unless_delivered(by_frequency["weekly"], day)
    contract = CONTRACTS[by_frequency["weekly"]]
    folder = tmp_path / "landing" / contract.department / contract.source_name / day.isoformat()
    folder.mkdir(parents=True)
    with pytest.raises(AirflowSkipException):  # an empty day folder delivers nothing
        tasks.skip_unless_delivered(by_frequency["weekly"], day)
    (folder / ".extract.csv.part").write_text("x\n", encoding="utf-8")
    assert tasks.skip_unless_delivered(by_frequency["weekly"], day) is None  # ingest reports it
    (folder / ".extract.csv.part").rename(folder / "extract.csv")
    assert tasks.skip_unless_delivered(by_frequency["weekly"], day) is None
    assert tasks.delivered_days(by_frequency["weekly"], [day, day + dt.timedelta(days=1)]) == [day]


def test_the_sharing_dag_carries_the_access_log_every_15_minutes(dagbag):
    dag = dagbag.dags["citylake_sharing"]
    assert dag.timetable.expression == "*/15 * * * *"
    assert set(dag.task_ids) == {"carry_access_log"}
    assert dag.get_task("carry_access_log").python_callable.__name__ == "access_log_task"
