"""Data-service figures: 身份证核验 and a query by key under load, p50/p95/p99 and throughput.

A scratch data root gets a register of `--persons` natural persons (default 2,000,000, the
whole city) in the published clear file, in the catalogue's columns, with valid GB 11643
numbers and the key index publication builds; `citylake serve` runs on it as a subprocess. A
load generator on 127.0.0.1 (asyncio + aiohttp, `--clients` concurrent connections, bounded by
`--requests` and `--seconds`) then measures, in this one process:

- baseline: GET /health, the bare HTTP round trip of the same server (no token, no query, no
  audit), and the bare DuckDB probe of the same row in this process;
- verify: POST /api/v1/verify with a random registered ID number and its name;
- by key: GET /api/v1/resources/population__person/rows/<id> under an approved grant.

Targets (issue 14): p95 ≤ 20 ms with 16 clients and ≥ 400 verifications/s on 2 cores.

    .venv/bin/python benchmarks/bench_service.py            # 2,000,000 persons
    .venv/bin/python benchmarks/bench_service.py --persons 200000 --requests 3000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from citylake.catalogue import GOLD_TABLES, clear_select, gold_table  # noqa: E402

CITYLAKE = str(Path(sys.executable).parent / "citylake")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高梁莫覃韦蒙"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰"


def build_register(root: Path, persons: int) -> None:
    """The clear file (as publication writes it: clear_select) with population__person (valid numbers, names, 2% deceased) and every
    other gold table empty; serving_tables in the masked file."""
    clear = root / "serving" / "restricted" / "city_clear.duckdb"
    clear.parent.mkdir(parents=True, mode=0o700)
    person = gold_table("population__person")
    types = person.column_types
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    checksum = " + ".join(
        f"{w} * CAST(substr(f, {i + 1}, 1) AS INTEGER)" for i, w in enumerate(weights)
    )
    values = {
        "id_number": "f || substr('10X98765432', (" + checksum + ") % 11 + 1, 1)",
        "name": f"substr('{SURNAMES}', (i % {len(SURNAMES)}) + 1, 1)"
        f" || substr('{GIVEN}', ((i // 7) % {len(GIVEN)}) + 1, 1)"
        f" || CASE WHEN i % 3 = 0 THEN substr('{GIVEN}', ((i // 11) % {len(GIVEN)}) + 1, 1) ELSE '' END",
        "is_alive": "i % 50 <> 0",
        "division_code": "'451102'",
        "division_name": "'八步区'",
        "birth_date": "birth",
    }
    select = ", ".join(f'CAST({values.get(c, "NULL")} AS {t}) AS "{c}"' for c, t in types.items())
    with duckdb.connect(str(clear)) as con:
        con.execute(f"""
            CREATE TABLE population__person AS
            WITH people AS (
                SELECT i, DATE '2003-01-01' + CAST(i // 1000 AS INTEGER) AS birth
                FROM range({persons}) t(i)
            ), numbered AS (
                SELECT i, birth, '451102' || strftime(birth, '%Y%m%d') || lpad(CAST(i % 1000 AS VARCHAR), 3, '0') AS f
                FROM people
            )
            , persons AS (SELECT {select} FROM numbered ORDER BY hash(i))
            SELECT {clear_select(person)} FROM persons
        """)
        con.execute('CREATE INDEX population__person__key ON population__person ("id_number")')
        for table in GOLD_TABLES:
            if table.name == "population__person":
                continue
            columns = ", ".join(
                f'CAST(NULL AS {t}) AS "{c}"' for c, t in table.column_types.items()
            )
            con.execute(
                f"CREATE TABLE {table.name} AS SELECT {clear_select(table)}"
                f" FROM (SELECT {columns} WHERE false)"
            )
            keys = ", ".join(f'"{k}"' for k in table.key)
            con.execute(f"CREATE INDEX {table.name}__key ON {table.name} ({keys})")
    with duckdb.connect(str(root / "serving" / "city.duckdb")) as con:
        con.execute("CREATE TABLE serving_tables (table_name VARCHAR, gold_version BIGINT)")
        con.execute("CREATE TABLE serving_info AS SELECT DATE '2026-11-27' AS as_of")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    variables = {**os.environ, "CITYLAKE_DATA_ROOT": str(root), "CITYLAKE_ENV": "local"}
    process = subprocess.Popen([CITYLAKE, "serve", "--port", str(port)], env=variables,
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the service did not start")


def token(root: Path, base: str, code: str) -> str:
    creds = json.loads((root / "secrets" / "service_clients" / f"{code}.json").read_text())
    answer = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials",
                        "client_id": code, "client_secret": creds["client_secret"]})  # fmt: skip
    answer.raise_for_status()
    return answer.json()["access_token"]


async def load(make_request, clients: int, requests: int, seconds: float, rate: float = 0) -> dict:
    """`clients` connections sending until the count or the time is spent: one request after
    another (rate=0, saturation), or paced so that together they offer `rate` requests per
    second, each latency then counted from when its request was due (queueing included)."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = requests
    began = time.perf_counter()
    deadline = began + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def worker(index: int):
            nonlocal remaining
            sent = 0
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                due = time.perf_counter()
                if rate:
                    due = began + (sent * clients + index) / rate
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent += 1
                async with make_request(client) as response:
                    await response.read()
                latencies.append((time.perf_counter() - due) * 1000)
                statuses[response.status] = statuses.get(response.status, 0) + 1

        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "n": len(latencies),
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "p99": latencies[int(0.99 * (len(latencies) - 1))],
        "per_s": len(latencies) / elapsed,
        "statuses": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=2_000_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--only", choices=("verify", "by key"), help="measure one service (and the baseline)"
    )
    parser.add_argument("--rate", type=float, default=400.0, help="offered load of the paced runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="citylake-bench-service-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        build_register(root, args.persons)
        print(
            f"register of {args.persons:,} persons built in {time.perf_counter() - started:.1f} s"
        )
        clear = root / "serving" / "restricted" / "city_clear.duckdb"
        with duckdb.connect(str(clear), read_only=True) as con:
            sample = con.execute(
                "SELECT id_number, name FROM population__person USING SAMPLE 5000 ROWS"
            ).fetchall()
            probes = []
            for number, _ in sample[:2000]:
                t = time.perf_counter()
                con.execute(
                    "SELECT name, is_alive FROM population__person WHERE id_number = ?", [number]
                ).fetchall()
                probes.append((time.perf_counter() - t) * 1000)
        probes.sort()
        process, base = serve(root)
        try:
            today = dt.date.today()
            renshe = {"Authorization": f"Bearer {token(root, base, 'renshe')}"}
            grant = httpx.post(f"{base}/api/v1/applications", headers=renshe, json={
                "resource": "population__person", "purpose": "社保待遇资格认证",
                "legal_basis": "《社会保险法》第七十二条", "fields": ["id_number", "name", "is_alive"],
                "rows": {"division_code": ["451102"]},
                "valid_from": str(today - dt.timedelta(days=1)),
                "valid_until": str(today + dt.timedelta(days=30))}).json()  # fmt: skip
            gongan = {"Authorization": f"Bearer {token(root, base, 'gongan')}"}
            httpx.post(f"{base}/api/v1/applications/{grant['id']}/decision", headers=gongan,
                       json={"approve": True}).raise_for_status()  # fmt: skip

            def health(client):
                return client.get(f"{base}/health")

            def verify(client):
                number, name = random.choice(sample)
                return client.post(f"{base}/api/v1/verify", headers=renshe,
                                   json={"id_number": number, "name": name})  # fmt: skip

            def by_key(client):
                number, _ = random.choice(sample)
                return client.get(
                    f"{base}/api/v1/resources/population__person/rows/{number}", headers=renshe
                )

            # Warm up: the register is loaded, and every sampled row has been read once, so the
            # runs below measure a service whose pages are in memory (a cold read of a row costs
            # a few milliseconds more: its column segments are read and decompressed).
            asyncio.run(load(verify, args.clients, 300, 10))
            asyncio.run(load(by_key, args.clients, len(sample), 60))
            results = {}
            measured = [("baseline /health", health), ("verify", verify), ("by key", by_key)]
            for label, request in measured:
                if args.only and label not in ("baseline /health", args.only):
                    continue
                results[label] = asyncio.run(
                    load(request, args.clients, args.requests, args.seconds)
                )
                results[f"{label} @{args.rate:g}/s"] = asyncio.run(
                    load(request, args.clients, args.requests, args.seconds, args.rate)
                )
        finally:
            process.terminate()
            process.wait(20)

    print(
        f"\n{args.clients} concurrent clients, ≤ {args.requests} requests or {args.seconds:.0f} s each"
    )
    print(
        f"bare DuckDB probe in this process: median {statistics.median(probes):.2f} ms, "
        f"p95 {probes[int(0.95 * (len(probes) - 1))]:.2f} ms"
    )
    base_line = results["baseline /health"]
    print(
        f"{'':24}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}{'p95 ×':>8}  statuses"
    )
    for label, r in results.items():
        print(f"{label:24}{r['n']:>7}{r['p50']:>9.2f}{r['p95']:>9.2f}{r['p99']:>9.2f}"
              f"{r['per_s']:>9.0f}{r['p95'] / base_line['p95']:>8.2f}  {r['statuses']}")  # fmt: skip
    for label in ("verify", "by key"):
        if label not in results:
            continue
        paced, saturated = results[f"{label} @{args.rate:g}/s"], results[label]
        print(
            f"\n{label}: p95 {paced['p95']:.1f} ms at {paced['per_s']:.0f}/s offered by "
            f"{args.clients} clients (target ≤ 20 ms at ≥ 400/s); at saturation "
            f"{saturated['per_s']:.0f}/s with p95 {saturated['p95']:.1f} ms"
        )


if __name__ == "__main__":
    main()
