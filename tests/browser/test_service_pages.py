"""The data service's pages in Chromium: the sharing catalogue a department data officer browses
and searches, a resource's fields and classes, and the public open-data page, all in Chinese.
The service runs as `citylake serve` over the small city published with the pipeline's SQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from citylake.config import load_city
from pipelines.open_data import export
from tests.service.serving import Served, serve, stop

from .conftest import write_serving_file
from .test_dashboards import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    import os

    from citylake.config import load_environment

    root = tmp_path_factory.mktemp("service_pages")
    write_serving_file(root)
    os.environ["CITYLAKE_DATA_ROOT"] = str(root)
    try:
        env = load_environment()
    finally:
        del os.environ["CITYLAKE_DATA_ROOT"]
    export(env, load_city())
    running = serve(root)
    yield running
    stop(running)


@pytest.fixture(scope="module")
def page(served) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
        yield context.new_page()
        chromium.close()


def _shot(served: Served, page, name: str) -> None:
    folder = served.root / "artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"service__{name}.png"), full_page=True)


def test_the_catalogue_page_lists_searches_and_opens_a_resource(served: Served, page) -> None:
    from citylake.catalogue import GOLD_TABLES

    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{served.base}/catalogue")
    assert "政务信息资源目录" in page.title()
    rows = page.locator("#resources tr")
    assert rows.count() == len(GOLD_TABLES) + 1  # the header and one row per gold table
    _shot(served, page, "catalogue")

    page.fill('input[name="q"]', "户籍")
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile(r"q=%E6%88%B7%E7%B1%8D|q=户籍"))
    found = page.locator("#resources tr").count() - 1
    assert 1 <= found < len(GOLD_TABLES)
    assert page.locator("#resources").get_by_text("population__person").count() == 1

    page.select_option('select[name="sharing"]', "无条件共享")
    page.fill('input[name="q"]', "")
    page.click('button[type="submit"]')
    page.wait_for_load_state("networkidle")
    unconditional = page.locator("#resources .tag")
    assert unconditional.count() >= 1
    assert set(unconditional.all_inner_texts()) == {"无条件共享"}

    page.goto(f"{served.base}/catalogue/population__person")
    fields = page.locator("#fields tr")
    assert (
        fields.count()
        == len(next(t for t in GOLD_TABLES if t.name == "population__person").columns) + 1
    )
    assert page.get_by_text("市公安局").count() >= 1
    assert page.locator("#fields").get_by_text("不予共享").count() == 1  # spouse_id_number
    body = page.inner_text("main")
    assert len(CJK.findall(body)) > 200
    _shot(served, page, "resource")
    assert not errors, errors


def test_the_open_data_page_lists_every_package_with_working_downloads(
    served: Served, page
) -> None:
    import httpx

    from pipelines.open_data import load_spec

    page.goto(f"{served.base}/open-data")
    assert "公共数据开放" in page.inner_text("h2")
    packages = page.locator(".package")
    assert packages.count() == len(load_spec().packages)
    links = page.locator(".package a").evaluate_all("els => els.map(e => e.href)")
    assert any(link.endswith("datapackage.json") for link in links)
    for link in links:
        answer = httpx.get(link)
        assert answer.status_code == 200, link
    _shot(served, page, "open_data")
    assert served.last(path="/open-data")["outcome"] == "granted"


def test_the_openapi_page_renders_from_the_service_itself(served: Served, page) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    outside: list[str] = []
    page.on(
        "request", lambda r: outside.append(r.url) if not r.url.startswith(served.base) else None
    )
    page.goto(f"{served.base}/docs")
    page.locator(".opblock").first.wait_for(timeout=60_000)
    assert page.locator(".opblock").count() >= 15
    assert "数据共享交换服务" in page.inner_text(".information-container")
    _shot(served, page, "docs")
    assert not outside, outside  # no CDN: the city network has no internet
    assert not errors, errors
