"""A real Superset for the browser tests: own data root, own port, own metadata database.

The session fixture builds a small city's serving file with the pipeline's own publication SQL
(tests/browser/small_city.py; new file, then os.replace), runs `scripts/superset.sh init`, `start` and `provision` against it, and stops that
Superset at the end. Nothing touches the developer's var/ or a Superset already on port 8088.

- CITYLAKE_SERVING_READY=1: serve a copy of the file the pipeline published (the configured
  serving file) instead of the small built-in one.
- CITYLAKE_BROWSER_DATA_ROOT=<dir>: keep the data root (log, screenshots) there instead of a
  pytest temporary folder, e.g. for CI to upload artifacts/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .small_city import SmallCity, make_small_city

REPO_ROOT = Path(__file__).resolve().parents[2]
SUPERSET_SH = REPO_ROOT / "scripts" / "superset.sh"


@dataclass(frozen=True)
class SupersetInstance:
    base_url: str
    data_root: Path
    serving_file: Path
    admin_user: str
    admin_password: str
    env: dict[str, str]
    # The small city the serving file was built from (None when serving a published file).
    small_city: SmallCity | None = None

    def password(self, username: str) -> str:
        """A user's generated password (<data root>/secrets), as an operator would read it."""
        if username == self.admin_user:
            return self.admin_password
        return (self.data_root / "secrets" / f"superset_{username}_password").read_text().strip()

    def run_script(self, subcommand: str, timeout: float = 1800) -> None:
        run_superset_script(subcommand, self.env, timeout)

    def api_token(self, username: str | None = None) -> str:
        """A JWT for Superset's REST API (/api/v1/), as a script or CI job would get one."""
        username = username or self.admin_user
        response = httpx.post(
            f"{self.base_url}/api/v1/security/login",
            json={
                "username": username,
                "password": self.password(username),
                "provider": "db",
                "refresh": False,
            },
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["access_token"]


def browser_login(
    page, instance: SupersetInstance, attempts: int = 2, username: str | None = None
) -> None:
    """Log in through Superset's own login form, as a person would.

    The form is a React page that fetches a CSRF token before it can post; on a loaded machine
    a click before the page settles can be lost. So wait for the network to go quiet, watch the
    POST itself, and try once more before failing with what the server answered and the page said.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    username = username or instance.admin_user
    failure = ""
    for attempt in range(1, attempts + 1):
        page.goto(f"{instance.base_url}/login/", wait_until="networkidle", timeout=60_000)
        page.fill('[data-test="username-input"]', username)
        page.fill('[data-test="password-input"]', instance.password(username))
        try:
            with page.expect_response(
                lambda r: "/login" in r.url and r.request.method == "POST", timeout=60_000
            ) as posted:
                page.click('[data-test="login-button"]')
            status = posted.value.status
            page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
            return
        except PlaywrightTimeout as error:
            body = page.locator("body").inner_text(timeout=5_000)[:500]
            failure = f"attempt {attempt}: {error.message.splitlines()[0]}; page: {body!r}"
            if "status" in locals():
                failure += f"; POST /login/ answered {status}"
    raise AssertionError(
        f"could not log in to Superset at {instance.base_url} as {username}: {failure}"
    )


def run_superset_script(subcommand: str, env: dict[str, str], timeout: float = 1800) -> None:
    result = subprocess.run(
        [str(SUPERSET_SH), subcommand],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"scripts/superset.sh {subcommand} failed (exit {result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )


def write_serving_file(data_root: Path) -> SmallCity:
    """The small city (tests/browser/small_city.py) published with publish's own SQL."""
    from citylake.config import load_city, load_contracts

    small = make_small_city(load_city(), load_contracts())
    small.publish(data_root / "small_city", data_root / "serving" / "city.duckdb")
    return small


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _published_serving_file() -> Path:
    from citylake.config import load_environment

    return load_environment().serving_file


@pytest.fixture(scope="session")
def superset(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupersetInstance]:
    chosen_root = os.environ.get("CITYLAKE_BROWSER_DATA_ROOT")
    data_root = Path(chosen_root) if chosen_root else tmp_path_factory.mktemp("citylake")
    data_root = data_root.resolve()
    serving_file = data_root / "serving" / "city.duckdb"
    small = None
    if os.environ.get("CITYLAKE_SERVING_READY"):
        published = _published_serving_file()
        serving_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(published, serving_file)
        clear = published.parent / "restricted" / "city_clear.duckdb"
        (serving_file.parent / "restricted").mkdir(exist_ok=True)
        shutil.copyfile(clear, serving_file.parent / "restricted" / clear.name)
    else:
        small = write_serving_file(data_root)

    port = _free_port()
    env = {**os.environ, "CITYLAKE_DATA_ROOT": str(data_root), "CITYLAKE_SUPERSET_PORT": str(port)}
    # A kept data root may hold a Superset left running by an interrupted run, on another port.
    run_superset_script("stop", env)
    run_superset_script("init", env)
    run_superset_script("start", env)
    try:
        run_superset_script("provision", env)
        password = (data_root / "secrets" / "superset_admin_password").read_text().strip()
        yield SupersetInstance(
            base_url=f"http://127.0.0.1:{port}",
            data_root=data_root,
            serving_file=serving_file,
            admin_user="admin",
            admin_password=password,
            env=env,
            small_city=small,
        )
    finally:
        run_superset_script("stop", env)
