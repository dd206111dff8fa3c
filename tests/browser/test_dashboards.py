"""Every dashboard, seen through Chromium by each role, checked against the serving file.

The oracle is the serving file itself, queried with DuckDB apart from Superset, using the metric
SQL the bundle's datasets declare; the small city's own rows (tests/browser/small_city.py) are a
second, independent oracle for the operations screen's figures.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml
from playwright.sync_api import expect

from dashboards.provision import BUNDLE_DIR, RESTRICTED_DATABASE_UUID

from .conftest import SupersetInstance, browser_login
from .small_city import expected

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Headless and quiet: no GPU, no QUIC, and none of Chromium's own calls to the internet.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Superset's compiled frontend always adds a telemetry pixel from scarf.sh; our CSP blocks it, which
# is intended. Any other CSP violation means the policy broke something a chart needs.
EXPECTED_CSP_BLOCK = "scarf.sh"
OPERATIONS = "city_operations"
# SQL Lab's editor in Superset 6.1 (no longer an .ace_editor)
SQL_EDITOR = '[data-test="sql-editor-tabs"], [data-test="sql-editor"]'
COUNTY = "451121"  # 昭平县: the county analyst of these tests


def _bundle(folder: str) -> dict[str, dict]:
    return {
        p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
        for p in sorted((BUNDLE_DIR / folder).rglob("*.yaml"))
    }


DASHBOARDS = {d["slug"]: d for d in _bundle("dashboards").values()}
CHARTS = {c["uuid"]: c for c in _bundle("charts").values()}
DATASETS = {d["uuid"]: d for d in _bundle("datasets").values()}


def dashboard_charts(slug: str) -> list[dict]:
    nodes = DASHBOARDS[slug]["position"].values()
    return [
        CHARTS[n["meta"]["uuid"]] for n in nodes if isinstance(n, dict) and n.get("type") == "CHART"
    ]


def shown(value: float, d3format: str) -> str:
    """A number as Superset's d3 format shows it (the two formats the bundle's numbers use)."""
    if d3format == ".1%":
        return f"{value:.1%}"
    return f"{int(value):,}"


def big_number_oracle(serving_file: Path, chart: dict, where: str = "true") -> str:
    """The figure a big-number chart shows, queried from the serving file with the dataset's SQL."""
    dataset = DATASETS[chart["dataset_uuid"]]
    [metric] = [m for m in dataset["metrics"] if m["metric_name"] == chart["params"]["metric"]]
    with duckdb.connect(str(serving_file), read_only=True) as con:
        (value,) = con.execute(
            f"SELECT {metric['expression']} FROM {dataset['table_name']} WHERE {where}"
        ).fetchone()
    return shown(value or 0, metric["d3format"])


class DashboardPage:
    """One logged-in browser context; opens dashboards and records what Superset answered."""

    def __init__(self, browser, superset: SupersetInstance, username: str):
        self.superset = superset
        self.username = username
        self.context = browser.new_context(viewport={"width": 1600, "height": 2000}, locale="zh-CN")
        self.page = self.context.new_page()
        self.chart_statuses: list[int] = []
        self.chart_rows: list[dict] = []
        self.csp_violations: list[str] = []
        self.page.on("response", self._on_response)
        self.page.on("console", self._on_console)
        browser_login(self.page, superset, username=username)

    def _on_response(self, response) -> None:
        if "/api/v1/chart/data" in response.url:
            self.chart_statuses.append(response.status)
            if response.ok:
                for result in response.json().get("result", []):
                    self.chart_rows.extend(result.get("data") or [])

    def _on_console(self, message) -> None:
        text = message.text
        if "Content Security Policy" in text and EXPECTED_CSP_BLOCK not in text:
            self.csp_violations.append(text)

    def open(self, slug: str) -> float:
        """Open a dashboard, wait until every chart has rendered, screenshot it; returns seconds."""
        self.chart_statuses.clear()
        self.chart_rows.clear()
        started = time.perf_counter()
        self.page.goto(f"{self.superset.base_url}/superset/dashboard/{slug}/")
        expected_charts = len(dashboard_charts(slug))
        self._wait_until_rendered(expected_charts)
        seconds = time.perf_counter() - started
        # ECharts animates for about a second (longer on a loaded machine), and Superset may
        # rewrite the URL (native_filters_key) and remount the grid after the first render:
        # look at the page only once the grid has stayed rendered for a few seconds in a row.
        self._wait_until_rendered(expected_charts, steady_ms=4000)
        folder = self.superset.data_root / "artifacts" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(folder / f"{self.username}__{slug}.png"), full_page=True)
        return seconds

    def _wait_until_rendered(self, expected_charts: int, steady_ms: int = 0) -> None:
        """Wait until all charts are on the grid, none loading, for steady_ms without a break."""
        self.page.wait_for_function(
            """([n, steadyMs]) => {
                const holders = document.querySelectorAll(
                    '[data-test="dashboard-component-chart-holder"]');
                const busy = document.querySelectorAll(
                    '.dashboard-grid .loading, [data-test="loading-indicator"]');
                if (holders.length !== n || busy.length !== 0) {
                    window.__citylakeRenderedSince = null;
                    return false;
                }
                const now = performance.now();
                window.__citylakeRenderedSince ??= now;
                return now - window.__citylakeRenderedSince >= steadyMs;
            }""",
            arg=[expected_charts, steady_ms],
            timeout=180_000,
            polling=100,
        )

    def holders(self):
        return self.page.locator('[data-test="dashboard-component-chart-holder"]')

    def assert_no_chart_failed(self, slug: str) -> None:
        errors = self.holders().locator('[role="alert"]')
        assert errors.count() == 0, f"{slug}: a chart shows an error: {errors.all_inner_texts()}"
        assert self.chart_statuses, f"{slug}: no chart asked for data"
        assert all(s == 200 for s in self.chart_statuses), (slug, self.chart_statuses)
        assert not self.csp_violations, json.dumps(self.csp_violations, ensure_ascii=False)

    def big_number(self, slice_name: str) -> str:
        holder = self.holders().filter(has=self.page.get_by_text(slice_name, exact=True))
        return holder.locator(".header-line").inner_text().strip()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_admin_sees_every_dashboard_without_errors(superset: SupersetInstance, browser) -> None:
    page = DashboardPage(browser, superset, "admin")
    timings = {}
    for slug, dashboard in DASHBOARDS.items():
        timings[slug] = page.open(slug)
        page.assert_no_chart_failed(slug)
        expect(page.holders()).to_have_count(len(dashboard_charts(slug)), timeout=60_000)
        title = page.page.locator('[data-test="editable-title-input"]').input_value()
        assert title == dashboard["dashboard_title"]
        for chart in dashboard_charts(slug):  # every key number equals the serving file's
            if chart["viz_type"] == "big_number_total":
                assert page.big_number(chart["slice_name"]) == big_number_oracle(
                    superset.serving_file, chart
                ), (slug, chart["slice_name"])
        assert re.search(r"[\u4e00-\u9fff]", title), "dashboard titles are Chinese first"
    page.context.close()
    screenshots = sorted((superset.data_root / "artifacts" / "screenshots").glob("admin__*.png"))
    assert [p.stem.split("__")[1] for p in screenshots] == sorted(DASHBOARDS)
    print("render seconds:", {k: round(v, 1) for k, v in timings.items()})


def test_operations_numbers_equal_the_serving_file(superset: SupersetInstance, browser) -> None:
    page = DashboardPage(browser, superset, "leader")
    page.open(OPERATIONS)
    page.assert_no_chart_failed(OPERATIONS)
    big_numbers = [c for c in dashboard_charts(OPERATIONS) if c["viz_type"] == "big_number_total"]
    assert len(big_numbers) == 12
    on_page = {c["slice_name"]: page.big_number(c["slice_name"]) for c in big_numbers}
    from_file = {c["slice_name"]: big_number_oracle(superset.serving_file, c) for c in big_numbers}
    page.context.close()
    assert on_page == from_file
    if superset.small_city is not None:  # the rows the city was made of agree as well
        figures = expected(superset.small_city)
        assert on_page["户籍人口 Residents"] == f"{figures['residents']:,}"
        assert on_page["本月出生 Births this month"] == f"{figures['births_this_month']:,}"
        share = figures["overdue_cases"] / figures["service_cases"]
        assert on_page["超期率 Overdue share"] == f"{share:.1%}"


def test_the_security_officer_sees_every_access_of_the_data_service(
    superset: SupersetInstance, browser
) -> None:
    page = DashboardPage(browser, superset, "security")
    page.open("sharing_audit")
    page.assert_no_chart_failed("sharing_audit")
    with duckdb.connect(str(superset.serving_file), read_only=True) as con:
        requests, denials, reads = con.execute(
            "SELECT sum(requests), sum(denials), sum(personal_reads) FROM health_access"
        ).fetchone()
    assert requests > denials > 0 and reads > 0  # the small city has all three
    assert page.big_number("访问次数 Requests") == f"{requests:,}"
    assert page.big_number("拒绝次数 Denials") == f"{denials:,}"
    assert page.big_number("明文个人信息读取 Personal data read in clear") == f"{reads:,}"
    page.context.close()


def test_only_the_security_officer_reads_the_access_log(superset: SupersetInstance) -> None:
    """health_access (who read what, for what purpose) is for the roles with `audit: true`; the
    other roles over the masked file see every other dataset."""

    def datasets(username: str) -> set[str]:
        with _api(superset, username) as client:
            response = client.get("/api/v1/dataset/", params={"q": "(page_size:100)"})
            response.raise_for_status()
            return {row["table_name"] for row in response.json()["result"]}

    officer, leader, analyst = (
        datasets("security"),
        datasets("leader"),
        datasets(f"analyst_{COUNTY}"),
    )
    assert "health_access" in officer
    assert "health_access" not in leader and "health_access" not in analyst
    assert officer - {"health_access"} == leader == analyst


def test_county_analyst_sees_only_its_county(superset: SupersetInstance, browser) -> None:
    page = DashboardPage(browser, superset, f"analyst_{COUNTY}")
    page.open(OPERATIONS)
    page.assert_no_chart_failed(OPERATIONS)
    residents = next(
        c for c in dashboard_charts(OPERATIONS) if c["slice_name"].startswith("户籍人口")
    )
    shown_residents = page.big_number(residents["slice_name"])
    districts = {row["division_name"] for row in page.chart_rows if "division_name" in row}
    division_codes = {row["division_code"] for row in page.chart_rows if "division_code" in row}
    page.open("population")
    page.assert_no_chart_failed("population")
    districts |= {row["division_name"] for row in page.chart_rows if "division_name" in row}
    page.context.close()

    assert shown_residents == big_number_oracle(
        superset.serving_file, residents, f"division_code = '{COUNTY}'"
    )
    assert shown_residents != big_number_oracle(superset.serving_file, residents)
    with duckdb.connect(str(superset.serving_file), read_only=True) as con:
        (name,) = con.execute(
            "SELECT division_name FROM ref_division WHERE division_code = ?", [COUNTY]
        ).fetchone()
    assert districts == {name}
    assert division_codes <= {COUNTY}
    if superset.small_city is not None:
        assert shown_residents == f"{expected(superset.small_city, COUNTY)['residents']:,}"


@contextmanager
def _api(superset: SupersetInstance, username: str) -> Iterator[httpx.Client]:
    """A REST client logged in as the user, with the CSRF token Superset wants on POSTs."""
    with httpx.Client(base_url=superset.base_url, timeout=60) as client:
        client.headers["Authorization"] = f"Bearer {superset.api_token(username)}"
        token = client.get("/api/v1/security/csrf_token/").json()["result"]
        client.headers.update({"X-CSRFToken": token, "Referer": superset.base_url})
        yield client


def _database_ids(client: httpx.Client) -> dict[str, int]:
    response = client.get("/api/v1/database/", params={"q": "(page_size:100)"})
    response.raise_for_status()
    return {row["database_name"]: row["id"] for row in response.json()["result"]}


def _run_sql(client: httpx.Client, database_id: int, sql: str) -> httpx.Response:
    return client.post(
        "/api/v1/sqllab/execute/",
        json={"database_id": database_id, "sql": sql, "schema": "main", "runAsync": False},
    )


def test_leader_cannot_open_sql_lab(superset: SupersetInstance, browser) -> None:
    page = DashboardPage(browser, superset, "leader")
    page.page.goto(f"{superset.base_url}/sqllab/")
    page.page.wait_for_load_state("networkidle")
    landed = page.page.url
    editor = page.page.locator(SQL_EDITOR)
    assert editor.count() == 0, f"the leader reached SQL Lab at {landed}"
    page.context.close()

    with _api(superset, "admin") as admin:
        masked_id = _database_ids(admin)["CityLake 城市数据湖"]
    with _api(superset, "leader") as leader:
        denied = _run_sql(leader, masked_id, "SELECT count(*) FROM population__person")
        assert denied.status_code in (401, 403), denied.text
        assert "CityLake 明文 Restricted" not in _database_ids(leader)


def test_engineer_queries_both_files_in_sql_lab(superset: SupersetInstance, browser) -> None:
    with _api(superset, "engineer") as engineer:
        ids = _database_ids(engineer)
        masked = _run_sql(
            engineer, ids["CityLake 城市数据湖"], "SELECT id_number_masked FROM population__person"
        )
        clear = _run_sql(
            engineer,
            ids["CityLake 明文 Restricted"],
            "SELECT min(id_number) AS first_id, max(id_number) AS last_id, count(*) AS persons"
            " FROM population__person",
        )
    assert masked.status_code == 200, masked.text
    assert clear.status_code == 200, clear.text
    masked_values = [row["id_number_masked"] for row in masked.json()["data"]]
    assert masked_values and all(re.fullmatch(r"\d{4}\*{10}[\dX]{4}", v) for v in masked_values)
    [row] = clear.json()["data"]
    assert re.fullmatch(r"\d{17}[\dX]", row["first_id"]), row
    if superset.small_city is not None:
        assert row["persons"] == len(masked_values)
        people = sorted(p["id_number"] for p in superset.small_city.gold("population__person"))
        assert (row["first_id"], row["last_id"], row["persons"]) == (
            people[0],
            people[-1],
            len(people),
        )

    # The county analyst cannot see that the restricted database exists.
    with _api(superset, f"analyst_{COUNTY}") as analyst:
        assert "CityLake 明文 Restricted" not in _database_ids(analyst)
        response = analyst.get("/api/v1/database/", params={"q": "(page_size:100)"})
        assert RESTRICTED_DATABASE_UUID not in response.text

    page = DashboardPage(browser, superset, "engineer")
    page.page.goto(f"{superset.base_url}/sqllab/")
    page.page.locator(SQL_EDITOR).first.wait_for(timeout=120_000)
    page.context.close()


def test_provisioning_twice_changes_nothing(superset: SupersetInstance) -> None:
    def inventory() -> dict[str, list[tuple]]:
        with _api(superset, "admin") as client:
            found = {}
            for resource, name in [
                ("database", "database_name"),
                ("dataset", "table_name"),
                ("chart", "slice_name"),
                ("dashboard", "dashboard_title"),
                ("rowlevelsecurity", "name"),
            ]:
                response = client.get(f"/api/v1/{resource}/", params={"q": "(page_size:100)"})
                response.raise_for_status()
                found[resource] = sorted((r["id"], r[name]) for r in response.json()["result"])
            for slug in DASHBOARDS:
                response = client.get(f"/api/v1/dashboard/{slug}/charts")
                response.raise_for_status()
                found[slug] = sorted((r["id"], r["slice_name"]) for r in response.json()["result"])
        return found

    before = inventory()
    superset.run_script("provision")
    after = inventory()

    assert after == before
    assert sorted(name for _, name in after["dashboard"]) == sorted(
        d["dashboard_title"] for d in DASHBOARDS.values()
    )
    assert len(after["chart"]) == len(CHARTS)
    assert len(after["dataset"]) == len(DATASETS)
    assert sorted(name for _, name in after["database"]) == [
        "CityLake 城市数据湖",
        "CityLake 明文 Restricted",
    ]
    assert len(after["rowlevelsecurity"]) == 5  # one per county-level division
    for slug in DASHBOARDS:
        assert len(after[slug]) == len(dashboard_charts(slug)), slug


def test_a_second_init_keeps_every_password_working(superset: SupersetInstance) -> None:
    """What a second `make run` does: init again. The admin and the provisioned users still log
    in with the passwords in the secrets folder, which init has not rewritten."""
    secrets = superset.data_root / "secrets"
    files = sorted(secrets.glob("superset_*_password"))
    before = {p.name: p.read_text() for p in files}
    superset.run_script("init")
    assert {p.name: p.read_text() for p in files} == before
    for username in ("admin", "leader"):
        assert superset.api_token(username)  # raises on 401
