"""The production profile: Airflow's and Superset's metadata in a real PostgreSQL, and no start
with a default password; then the running stack (api-server, scheduler, dag-processor with
LocalExecutor, beside one Spark Connect server) runs the city DAG through the REST API, twice for
the same logical date, with identical results. Runs in every `make test` (which installs PostgreSQL first)
(it needs Debian's postgresql and root to run the server as the postgres user)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from citylake.config import city_yesterday

pytestmark = pytest.mark.production
REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
CITYLAKE = REPO / ".venv" / "bin" / "citylake"
# Yesterday in the city: unpausing the city DAG makes the scheduler create that day's run at
# once (catchup=False), and the trigger then takes that run instead of adding a second one.
DAY = city_yesterday()
SAMPLE_SCALE = "0.0005"  # about 1,000 residents: the stack is under test, not Spark
RUN_TIMEOUT_S = "1800"


def psql(env: dict, database: str, sql: str) -> str:
    return subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            "5433",
            "-U",
            env["CITYLAKE_PG_USER"],
            "-d",
            database,
            "-Atc",
            sql,
        ],
        env={**env, "PGPASSWORD": env["CITYLAKE_PG_PASSWORD"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def production(tmp_path):
    # tmp_path is private to root: scripts/postgres.sh must then keep the cluster where the
    # postgres user can reach it, as it must for a checkout under /root.
    root = tmp_path
    env = {
        **os.environ,
        "CITYLAKE_ENV": "production",
        "CITYLAKE_DATA_ROOT": str(root),
        "CITYLAKE_PG_USER": "citylake_ci",
        "CITYLAKE_PG_PASSWORD": secrets.token_urlsafe(18),
    }
    subprocess.run([SCRIPTS / "postgres.sh", "start"], env=env, check=True)
    yield env
    cluster = subprocess.run(
        [SCRIPTS / "postgres.sh", "path"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run([SCRIPTS / "postgres.sh", "stop"], env=env, check=False)
    shutil.rmtree(cluster, ignore_errors=True)


def test_metadata_lives_in_postgresql_and_defaults_are_refused(production):
    for script in ("airflow.sh", "superset.sh"):
        refused = subprocess.run(
            [SCRIPTS / script, "init"],
            env={**production, "CITYLAKE_PG_PASSWORD": "airflow"},
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0
        assert "refusing to start" in refused.stdout + refused.stderr

    for script in ("airflow.sh", "superset.sh"):
        subprocess.run([SCRIPTS / script, "init"], env=production, check=True, capture_output=True)
    table = "SELECT count(*) FROM information_schema.tables WHERE table_name = '{}'"
    assert psql(production, "citylake_airflow", table.format("dag")) == "1"
    assert psql(production, "citylake_superset", table.format("ab_user")) == "1"
    assert (
        psql(
            production, "citylake_superset", "SELECT count(*) FROM ab_user WHERE username = 'admin'"
        )
        == "1"
    )
    root = Path(production["CITYLAKE_DATA_ROOT"])
    assert list(root.rglob("*.db")) == []  # no SQLite fallback anywhere


def test_the_data_service_keeps_its_state_in_postgresql(production):
    from tests.service.serving import serve, stop

    refused = subprocess.run(
        [CITYLAKE, "sharing", "credentials"],
        env={**production, "CITYLAKE_PG_PASSWORD": "admin"},
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "refusing to start" in refused.stdout + refused.stderr
    root = Path(production["CITYLAKE_DATA_ROOT"])
    served = serve(root, environment=production)
    try:
        assert served.token("renshe")
        with served.client("jiaoyu") as client:
            assert client.get("/api/v1/resources/spatial__division/rows").status_code == 503
    finally:
        stop(served)
    secrets_in_pg = psql(production, "citylake_service", "SELECT secret_hash FROM consumer_secrets")
    hashes = secrets_in_pg.splitlines()
    assert len(hashes) == len(
        yaml.safe_load((REPO / "conf" / "consumers.yaml").read_text())["consumers"]
    )
    assert all(h.startswith("$argon2id$") for h in hashes)
    logged = psql(
        production, "citylake_service",
        "SELECT outcome, reason FROM access_log WHERE consumer = 'jiaoyu'"
        " AND path = '/api/v1/resources/spatial__division/rows'",
    )  # fmt: skip
    assert logged == "error|not_published"  # nothing published in this data root yet
    assert list(root.rglob("*.db")) == []  # no SQLite fallback


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _conf_on_free_ports(tmp: Path) -> tuple[Path, int, int]:
    """A copy of conf/ whose Airflow and Spark Connect ports are free: a developer's running stack
    on this machine is never touched."""
    conf = tmp / "conf"
    shutil.copytree(REPO / "conf", conf)
    airflow_port, connect_port = _free_port(), _free_port()
    path = conf / "environments" / "production.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["services"] = {
        **data.get("services", {}),
        "airflow_port": airflow_port,
        "spark_connect_port": connect_port,
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return conf, airflow_port, connect_port


def _lake_fingerprint(root: Path) -> dict[str, tuple[int, str]]:
    """(rows, digest of every row, ingest times included) of each bronze, silver and gold table."""
    from citylake.lake import delta_relation, duckdb_connection, fingerprint, is_delta

    with duckdb_connection() as con:
        return {
            f"{layer}.{table.name}": fingerprint(con, delta_relation(table), exclude=())
            for layer in ("bronze", "silver", "gold")
            for table in sorted((root / "lake" / layer).iterdir())
            if is_delta(table)
        }


@pytest.fixture
def stack(production, tmp_path):
    """The production stack on free ports, with one small sample day in its landing zone."""
    conf, airflow_port, connect_port = _conf_on_free_ports(tmp_path)
    env = {
        **production,
        "CITYLAKE_CONF_DIR": str(conf),
        "CITYLAKE_SPARK_CONNECT_PORT": str(connect_port),
        "CITYLAKE_SPARK_CONNECT": f"sc://127.0.0.1:{connect_port}",
        "CITYLAKE_ALERT_LOG": str(tmp_path / "alerts.log"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    subprocess.run(
        [CITYLAKE, "sample", "--scale", SAMPLE_SCALE, "--seed", "3", "--date", DAY.isoformat()],
        env=env,
        check=True,
        capture_output=True,
    )
    started = []
    try:
        for command in (
            [SCRIPTS / "spark.sh", "connect-start"],
            [SCRIPTS / "airflow.sh", "init"],
            [SCRIPTS / "airflow.sh", "start"],
        ):
            subprocess.run(command, env=env, check=True, timeout=600)
            started.append(command)
        yield env, airflow_port
    finally:
        subprocess.run([SCRIPTS / "airflow.sh", "stop"], env=env, check=False, timeout=120)
        subprocess.run([SCRIPTS / "spark.sh", "connect-stop"], env=env, check=False, timeout=120)


def _run_city(env: dict) -> None:
    done = subprocess.run(
        [
            CITYLAKE,
            "airflow-run",
            "--dag",
            "citylake_city",
            "--date",
            DAY.isoformat(),
            "--timeout",
            RUN_TIMEOUT_S,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        status = subprocess.run([CITYLAKE, "status"], env=env, capture_output=True, text=True)
        services = subprocess.run(
            [SCRIPTS / "airflow.sh", "status"], env=env, capture_output=True, text=True
        )
        logs = Path(env["CITYLAKE_DATA_ROOT"]) / "log"
        tails = "".join(
            f"\n--- last lines of {log.name} ---\n"
            + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            for log in sorted(logs.glob("airflow-*.log"))
        )
        pytest.fail(
            f"citylake_city did not succeed:\n{done.stdout}{done.stderr}\n{status.stdout}\n"
            f"{services.stdout}{tails}"
        )


def _screenshot_grid(env: dict, port: int, dag_id: str) -> Path:
    """The DAG's grid in Airflow's own UI, in a real browser, saved for the record."""
    import httpx
    from playwright.sync_api import sync_playwright

    root = Path(env["CITYLAKE_DATA_ROOT"])
    password = json.loads((root / "secrets" / "airflow_passwords.json").read_text())["admin"]
    base = f"http://127.0.0.1:{port}"
    token = httpx.post(
        f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30
    ).json()["access_token"]
    keep = os.environ.get("CITYLAKE_BROWSER_DATA_ROOT")
    folder = (Path(keep) if keep else root) / "artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"airflow_grid_{dag_id}.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
            # The UI reads the JWT from this cookie, as after a login through its form.
            context.add_cookies([{"name": "_token", "value": token, "url": base}])
            page = context.new_page()
            # Airflow 3.3's DAG page is the grid (its left pane); /dags/<id>/grid is a 404 page.
            page.goto(f"{base}/dags/{dag_id}", wait_until="networkidle", timeout=120_000)
            page.get_by_text(dag_id).first.wait_for(timeout=60_000)
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    return path


def test_the_city_dag_runs_twice_through_the_api_with_identical_results(stack):
    env, port = stack
    root = Path(env["CITYLAKE_DATA_ROOT"])
    _run_city(env)
    first = _lake_fingerprint(root)
    from citylake.catalogue import GOLD_TABLES

    for table in GOLD_TABLES:
        rows, _ = first[f"gold.{table.name}"]
        assert rows > 0, f"gold.{table.name} is empty"
    # the household register delivered ~1,000 residents; the person table holds them all
    assert first["gold.population__person"][0] >= first["silver.person"][0] > 500

    # The same logical date again: the run is cleared and rerun, and nothing changes.
    _run_city(env)
    assert _lake_fingerprint(root) == first

    # `citylake status` reads the same through the REST API
    status = subprocess.run(
        [CITYLAKE, "status", "--json"], env=env, capture_output=True, text=True, check=True
    )
    summary = json.loads(status.stdout)
    dags = {d["dag_id"]: d for d in summary["dags"]}
    assert dags["citylake_city"]["last_run"]["state"] == "success"
    assert dags["citylake_city"]["failed_tasks"] == []
    from citylake.orchestration.policy import source_ids

    assert len(dags) == len(source_ids()) + 4  # + build, quality_publish, city, sharing
    assert summary["freshness"] is not None
    assert isinstance(summary["freshness"]["overdue"], list)
    screenshot = _screenshot_grid(env, port, "citylake_city")
    assert screenshot.stat().st_size > 10_000
    print(f"Airflow grid view: {screenshot}")
