"""A `citylake serve` subprocess over a data root, and what a test reads of it: tokens, the
access log (the service's state database, read with sqlite3), the clear file."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx

REPO = Path(__file__).resolve().parents[2]
CITYLAKE = str(Path(sys.executable).parent / "citylake")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    root: Path
    base: str
    process: subprocess.Popen

    @property
    def clear_file(self) -> Path:
        return self.root / "serving" / "restricted" / "city_clear.duckdb"

    def credentials(self, code: str) -> dict:
        path = self.root / "secrets" / "service_clients" / f"{code}.json"
        return json.loads(path.read_text(encoding="utf-8"))

    def token(self, code: str) -> str:
        creds = self.credentials(code)
        answer = httpx.post(
            f"{self.base}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": code,
                "client_secret": creds["client_secret"],
            },
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    def client(self, code: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token(code)}"}, timeout=60
        )

    def log(self, **where) -> list[dict]:
        """Access-log rows matching every given column (path: a substring), newest first."""
        con = sqlite3.connect(self.root / "metadata" / "service.db")
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM access_log ORDER BY id DESC")]
        con.close()
        found = []
        for row in rows:
            if all((v in (row[k] or "")) if k == "path" else row[k] == v for k, v in where.items()):
                found.append(row)
        return found

    def last(self, **where) -> dict:
        rows = self.log(**where)
        assert rows, f"no access-log row for {where}"
        return rows[0]

    def clear(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.clear_file), read_only=True) as con:
            return con.execute(sql, params or []).fetchall()


def serve(root: Path, environment: dict | None = None, **limits: str) -> Served:
    """`citylake serve` on a free port over root (local profile unless `environment` says);
    limits are service settings (CITYLAKE_SERVICE_<NAME>)."""
    port = free_port()
    variables = {**os.environ, "CITYLAKE_DATA_ROOT": str(root), "CITYLAKE_ENV": "local"}
    variables |= environment or {}
    variables |= {f"CITYLAKE_SERVICE_{k.upper()}": v for k, v in limits.items()}
    log = (root / "service.log").open("w")
    process = subprocess.Popen(
        [CITYLAKE, "serve", "--port", str(port)],
        env=variables,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return Served(root, base, process)
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.3)
    process.kill()
    raise AssertionError((root / "service.log").read_text())


def stop(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(15)
    except subprocess.TimeoutExpired:
        served.process.kill()
