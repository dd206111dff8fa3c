"""The data service, run as `citylake serve` over a real built city and hit by real clients:
httpx, the official delta-sharing client and schemathesis. Every attack also checks its row in
the access log (the service's state database, read here with sqlite3 as the security officer's
DAG reads it)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.service.serving import Served, serve, stop

pytestmark = [pytest.mark.spark, pytest.mark.airflow, pytest.mark.service]

TODAY = dt.date.today()


@pytest.fixture(scope="module")
def city_root(built_city, tmp_path_factory) -> Path:
    env, _, _ = built_city
    root = tmp_path_factory.mktemp("service") / "city"
    shutil.copytree(env.root, root, symlinks=True)  # the service writes state and secrets
    return root


@pytest.fixture(scope="module")
def served(city_root) -> Served:
    served = serve(city_root)
    yield served
    stop(served)


def _apply(client: httpx.Client, **body) -> httpx.Response:
    body = {
        "purpose": "社保待遇资格认证",
        "legal_basis": "《社会保险法》第七十二条",
        "valid_from": (TODAY - dt.timedelta(days=1)).isoformat(),
        "valid_until": (TODAY + dt.timedelta(days=30)).isoformat(),
        **body,
    }
    return client.post("/api/v1/applications", json=body)


def _approve(served: Served, owner: str, application_id: str) -> dict:
    with served.client(owner) as client:
        decided = client.post(
            f"/api/v1/applications/{application_id}/decision",
            json={"approve": True, "note": "同意"},
        )
    assert decided.status_code == 200, decided.text
    return decided.json()


# ----------------------------------------------------------------------------- credentials, tokens


def test_credentials_are_generated_once_mode_600_and_stored_hashed(served: Served) -> None:
    folder = served.root / "secrets" / "service_clients"
    files = sorted(folder.glob("*.json"))
    assert {p.stem for p in files} >= {"gongan", "renshe", "yibao", "jiaoyu", "zhengwu"}
    con = sqlite3.connect(served.root / "metadata" / "service.db")
    hashes = dict(con.execute("SELECT code, secret_hash FROM consumer_secrets"))
    con.close()
    for path in files:
        assert oct(path.stat().st_mode)[-3:] == "600", path
        secret = json.loads(path.read_text())["client_secret"]
        assert len(secret) >= 32
        assert hashes[path.stem].startswith("$argon2id$") and secret not in hashes[path.stem]
    # A second start keeps every secret: the token still buys with the same file.
    before = {p.name: p.read_text() for p in files}
    again = serve(served.root)
    try:
        assert {p.name: p.read_text() for p in folder.glob("*.json")} == before
        assert again.token("renshe")
    finally:
        stop(again)


def test_wrong_secret_no_token_tampered_and_expired_tokens_are_refused(served: Served) -> None:
    wrong = httpx.post(
        f"{served.base}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "renshe", "client_secret": "guess"},
    )
    assert wrong.status_code == 401
    assert served.last(path="/oauth/token")["outcome"] == "denied"

    url = f"{served.base}/api/v1/resources/spatial__division/rows"
    assert httpx.get(url).status_code == 401
    assert served.last(path="/spatial__division/rows")["reason"] == "no_token"

    token = served.token("renshe")
    head, body, signature = token.split(".")
    claims = json.loads(_b64decode(body))
    claims["sub"] = "gongan"  # a consumer pretending to be another
    forged = ".".join([head, _b64encode(json.dumps(claims).encode()), signature])
    answer = httpx.get(url, headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401
    row = served.last(path="/spatial__division/rows")
    assert (row["outcome"], row["reason"]) == ("denied", "invalid token")

    key = (served.root / "secrets" / "service_jwt_key").read_text().strip()
    expired = jwt.encode(
        {"sub": "renshe", "jti": "x", "aud": "citylake-service", "exp": int(time.time()) - 5},
        key,
        algorithm="HS256",
    )
    answer = httpx.get(url, headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert served.last(path="/spatial__division/rows")["reason"] == "token expired"


def _b64decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# ----------------------------------------------------------------------------- the catalogue


def test_catalogue_lists_every_gold_table_with_owner_frequency_and_field_classes(
    served: Served,
) -> None:
    from citylake.catalogue import GOLD_TABLES

    listed = httpx.get(f"{served.base}/api/v1/catalogue").json()
    assert sorted(r["name"] for r in listed) == sorted(t.name for t in GOLD_TABLES)
    person = next(r for r in listed if r["name"] == "population__person")
    assert person["owner"]["name"] == "市公安局" and person["update_frequency"] == "daily"
    spouse = next(f for f in person["fields"] if f["name"] == "spouse_id_number")
    assert spouse["sharing"] == "不予共享" and spouse["sharing_reason"]
    assert all(f["sharing"] and f["open"] and f["grade"] for r in listed for f in r["fields"])
    found = httpx.get(f"{served.base}/api/v1/catalogue", params={"q": "信用代码"}).json()
    assert found and all(
        any("信用代码" in f["zh"] for f in r["fields"]) or "信用" in r["title"]["zh"] for r in found
    )
    page = httpx.get(f"{served.base}/catalogue", params={"q": "户籍"})
    assert (
        page.status_code == 200
        and "政务信息资源目录" in page.text
        and "population__person" in page.text
    )
    assert "default-src 'self'" in page.headers["content-security-policy"]


# ----------------------------------------------------------------------------- access by class


def test_unconditional_fields_for_anyone_conditional_only_under_a_grant(served: Served) -> None:
    with served.client("jiaoyu") as client:
        divisions = client.get("/api/v1/resources/spatial__division/rows")
        assert divisions.status_code == 200
        assert (
            len(divisions.json()["rows"])
            == served.clear("SELECT count(*) FROM spatial__division")[0][0]
        )
        entities = client.get("/api/v1/resources/legal_entity__entity/rows", params={"limit": 5})
        assert entities.status_code == 200
        fields = entities.json()["fields"]
        assert "entity_name" in fields and "legal_representative_id_number" not in fields
        assert served.last(consumer="jiaoyu", resource="legal_entity__entity")["rows_returned"] == 5
        # A filter on a readable field that the projection leaves out.
        county = client.get(
            "/api/v1/resources/legal_entity__entity/rows",
            params={"division_code": "451121", "fields": "credit_code", "limit": 1000},
        )
        assert county.status_code == 200, county.text
        assert (
            len(county.json()["rows"])
            == served.clear(
                "SELECT count(*) FROM legal_entity__entity WHERE division_code = '451121'"
            )[0][0]
        )

        asked = client.get(
            "/api/v1/resources/legal_entity__entity/rows",
            params={"fields": "credit_code,legal_representative"},
        )
        assert asked.status_code == 403 and asked.json()["errorCode"] == "grant_required"
        row = served.last(consumer="jiaoyu", resource="legal_entity__entity")
        assert (row["outcome"], row["reason"]) == ("denied", "grant_required")

        people = client.get("/api/v1/resources/population__person/rows")
        assert people.status_code == 403 and people.json()["errorCode"] == "grant_required"


def test_a_grant_gives_its_fields_on_its_rows_masked_unless_named_in_clear(served: Served) -> None:
    county = served.clear(
        "SELECT division_code FROM population__person GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
    )[0][0]
    with served.client("renshe") as renshe:
        applied = _apply(
            renshe,
            resource="population__person",
            fields=["id_number", "name", "phone", "is_alive", "division_code"],
            clear_fields=["id_number"],
            rows={"division_code": [county]},
        )
        assert applied.status_code == 201, applied.text
        application = applied.json()
        assert application["status"] == "pending" and application["owner"] == "gongan"
        pending = renshe.get("/api/v1/resources/population__person/rows")
        assert pending.status_code == 403  # not yet approved

        # Only the owning department decides: the applicant cannot approve itself.
        own = renshe.post(
            f"/api/v1/applications/{application['id']}/decision", json={"approve": True}
        )
        assert own.status_code == 403
        assert served.last(consumer="renshe", path="/decision")["outcome"] == "denied"
        _approve(served, "gongan", application["id"])

        body, rows, cursor = None, [], None
        while body is None or cursor:
            params = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
            page = renshe.get("/api/v1/resources/population__person/rows", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            rows += body["rows"]
            cursor = body["next_cursor"]
        body["rows"] = rows
        assert body["grant"] == application["id"]
        # A grant reads what it names, in the table's order.
        assert body["fields"] == ["id_number", "name", "division_code", "phone", "is_alive"]
        assert body["masked"] == ["name", "phone"]
        expected = served.clear(
            "SELECT id_number, name FROM population__person "
            "WHERE division_code = ? ORDER BY id_number",
            [county],
        )
        assert [r["id_number"] for r in body["rows"]] == [e[0] for e in expected]
        for row, (_, name) in zip(body["rows"], expected, strict=True):
            assert row["division_code"] == county
            assert name is None or (row["name"][0] == name[0] and "*" in row["name"])
        logged = served.last(consumer="renshe", resource="population__person", outcome="granted")
        assert logged["grant_id"] == application["id"]
        assert logged["purpose"] == "社保待遇资格认证"
        assert json.loads(logged["clear_fields"]) == ["id_number"]
        assert sum(
            r["rows_returned"]
            for r in served.log(
                consumer="renshe", grant_id=application["id"], service="query", outcome="granted"
            )
        ) == len(expected)

        outside = served.clear(
            "SELECT id_number FROM population__person WHERE division_code <> ? LIMIT 1", [county]
        )[0][0]
        by_key = renshe.get(f"/api/v1/resources/population__person/rows/{outside}")
        assert by_key.status_code == 403 and by_key.json()["errorCode"] == "outside_grant"
        assert served.last(consumer="renshe", path=outside)["outcome"] == "denied"
        filtered = renshe.get(
            "/api/v1/resources/population__person/rows",
            params={"division_code": "451123" if county != "451123" else "451102"},
        )
        assert filtered.status_code == 403 and filtered.json()["errorCode"] == "outside_grant"
        extra = renshe.get(
            "/api/v1/resources/population__person/rows", params={"fields": "id_number,address"}
        )
        assert extra.status_code == 403 and extra.json()["errorCode"] == "grant_required"
        inside = expected[0][0]
        one = renshe.get(f"/api/v1/resources/population__person/rows/{inside}")
        assert one.status_code == 200 and one.json()["row"]["id_number"] == inside

    # Another consumer naming renshe's grant gets nothing.
    with served.client("yibao") as yibao:
        stolen = yibao.get(
            "/api/v1/resources/population__person/rows", params={"grant": application["id"]}
        )
        assert stolen.status_code == 403 and stolen.json()["errorCode"] == "grant_not_valid"
        row = served.last(consumer="yibao", resource="population__person")
        assert (row["outcome"], row["reason"]) == ("denied", "grant_not_valid")


def test_never_shared_fields_are_refused_even_to_the_oversight_consumer(served: Served) -> None:
    with served.client("zhengwu") as bureau:
        applied = _apply(
            bureau, resource="population__person", fields=["id_number", "spouse_id_number"]
        )
        assert applied.status_code == 403 and applied.json()["errorCode"] == "not_shareable"
        asked = bureau.get(
            "/api/v1/resources/population__person/rows",
            params={"fields": "id_number,spouse_id_number"},
        )
        assert asked.status_code == 403 and asked.json()["errorCode"] == "not_shareable"
        row = served.last(consumer="zhengwu", resource="population__person")
        assert (row["outcome"], row["reason"]) == ("denied", "not_shareable")


def test_an_expired_grant_gives_nothing(served: Served) -> None:
    with served.client("yibao") as yibao:
        applied = _apply(
            yibao,
            resource="licence__licence",
            fields=["licence_number", "holder_name"],
            valid_from=(TODAY - dt.timedelta(days=40)).isoformat(),
            valid_until=(TODAY - dt.timedelta(days=1)).isoformat(),
        )
        assert applied.status_code == 201, applied.text
        _approve(served, "shenpi", applied.json()["id"])
        asked = yibao.get(
            "/api/v1/resources/licence__licence/rows",
            params={"grant": applied.json()["id"], "fields": "licence_number"},
        )
        assert asked.status_code == 403 and asked.json()["errorCode"] == "grant_not_valid"
        assert served.last(consumer="yibao", resource="licence__licence")["outcome"] == "denied"


# ----------------------------------------------------------------------------- hostile parameters

INJECTIONS = [
    "451102' OR '1'='1",
    "1; DROP TABLE spatial__division; --",
    '" OR ""="',
    "') UNION SELECT id_number, name FROM population__person --",
    "％２７",
    "\\x00",
]


def test_sql_fragments_in_every_parameter_are_values_never_sql(served: Served) -> None:
    total = served.clear("SELECT count(*) FROM legal_entity__entity")[0][0]
    with served.client("jiaoyu") as client:
        for bad in INJECTIONS:
            for params in (
                {"division_code": bad},
                {"fields": bad},
                {"cursor": bad},
                {"grant": bad},
                {bad: "1"},
                {"entity_name": bad},
            ):
                answer = client.get("/api/v1/resources/legal_entity__entity/rows", params=params)
                assert answer.status_code in (200, 403, 422), (params, answer.text)
                if answer.status_code == 200:
                    assert answer.json()["rows"] == [], (params, answer.text)
                assert served.last(consumer="jiaoyu")["status"] == answer.status_code
            key = client.get(f"/api/v1/resources/legal_entity__entity/rows/{bad}")
            assert key.status_code in (404, 422), key.text
            resource = client.get(f"/api/v1/resources/{bad}/rows")
            assert resource.status_code in (404, 422)
    assert served.clear("SELECT count(*) FROM legal_entity__entity")[0][0] == total


def test_a_page_of_a_million_is_refused_and_the_cursor_walks_every_row_once(
    served: Served,
) -> None:
    with served.client("jiaoyu") as client:
        huge = client.get(
            "/api/v1/resources/legal_entity__entity/rows", params={"limit": 1_000_000}
        )
        assert huge.status_code == 422 and huge.json()["errorCode"] == "page_too_large"
        assert served.last(consumer="jiaoyu")["reason"] == "page_too_large"
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 7, "fields": "credit_code,entity_name"}
            if cursor:
                params["cursor"] = cursor
            body = client.get("/api/v1/resources/legal_entity__entity/rows", params=params).json()
            seen += [r["credit_code"] for r in body["rows"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
    expected = [
        r[0]
        for r in served.clear("SELECT credit_code FROM legal_entity__entity ORDER BY credit_code")
    ]
    assert seen == expected and pages == max(1, -(-len(expected) // 7))


def test_a_burst_past_the_rate_limit_gets_429_with_retry_after_and_is_recorded(
    city_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "city"
    shutil.copytree(city_root, root, symlinks=True)
    limited = serve(root, rate_per_s="2", burst="5", daily_quota="1000", workers="1")
    try:
        with limited.client("jiaoyu") as client:
            answers = [client.get("/api/v1/catalogue/spatial__division") for _ in range(3)]
            answers += [client.get("/api/v1/resources/spatial__division/rows") for _ in range(12)]
        refused = [a for a in answers if a.status_code == 429]
        assert refused and all(int(a.headers["Retry-After"]) >= 1 for a in refused)
        assert sum(a.status_code == 200 for a in answers) >= 5
        rows = limited.log(consumer="jiaoyu", reason="rate_limited")
        assert len(rows) == len(refused) and all(r["outcome"] == "denied" for r in rows)
    finally:
        stop(limited)


def test_an_access_is_in_the_log_after_the_service_is_killed(city_root, tmp_path) -> None:
    root = tmp_path / "city"
    shutil.copytree(city_root, root, symlinks=True)
    crashing = serve(root, workers="1")  # one process: the kill is the whole service
    with crashing.client("jiaoyu") as client:
        answer = client.get("/api/v1/resources/spatial__division/rows", params={"limit": 3})
    assert answer.status_code == 200
    crashing.process.send_signal(signal.SIGKILL)
    crashing.process.wait(10)
    row = crashing.last(consumer="jiaoyu", resource="spatial__division")
    assert (row["status"], row["rows_returned"], row["outcome"]) == (200, 3, "granted")


# ----------------------------------------------------------------------------- 身份证核验


def test_verify_answers_only_the_four_results_and_deceased(served: Served) -> None:
    alive = served.clear(
        "SELECT id_number, name FROM population__person WHERE is_alive AND name IS NOT NULL LIMIT 1"
    )[0]
    dead = served.clear(
        "SELECT id_number, name FROM population__person WHERE NOT is_alive "
        "AND name IS NOT NULL LIMIT 1"
    )
    known = {r[0] for r in served.clear("SELECT id_number FROM population__person")}
    unknown = next(n for n in _valid_id_numbers() if n not in known)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in alive[0])
    cases = [
        ((alive[0], alive[1]), {"result": "一致", "code": "match", "deceased": False}),
        ((full_width, f" {alive[1]} "), {"result": "一致", "code": "match", "deceased": False}),
        ((alive[0], alive[1] + "某"), {"result": "不一致", "code": "mismatch", "deceased": None}),
        ((unknown, "张三"), {"result": "查无此人", "code": "not_found", "deceased": None}),
        (
            (alive[0][:17] + ("0" if alive[0][17] != "0" else "1"), alive[1]),
            {"result": "号码无效", "code": "invalid_number", "deceased": None},
        ),
        (
            ("45110219900101", "张三"),
            {"result": "号码无效", "code": "invalid_number", "deceased": None},
        ),
        (
            ("' OR 1=1 --", "张三"),
            {"result": "号码无效", "code": "invalid_number", "deceased": None},
        ),
    ]
    if dead:
        cases.append(
            ((dead[0][0], dead[0][1]), {"result": "一致", "code": "match", "deceased": True})
        )
    with served.client("renshe") as client:
        for (number, name), want in cases:
            answer = client.post("/api/v1/verify", json={"id_number": number, "name": name})
            assert answer.status_code == 200, answer.text
            assert answer.json() == want, (number, name)
            row = served.last(consumer="renshe", path="/api/v1/verify")
            assert (row["service"], row["reason"]) == ("verify", want["code"])
            assert number not in row["path"]
        malformed = client.post("/api/v1/verify", json={"id_number": ["x"], "name": 3})
        assert malformed.status_code == 422
        assert served.last(consumer="renshe", path="/api/v1/verify")["outcome"] == "refused"
    with served.client("shichang") as client:  # no verify service
        answer = client.post("/api/v1/verify", json={"id_number": alive[0], "name": alive[1]})
        assert answer.status_code == 403
        assert served.last(consumer="shichang", path="/api/v1/verify")["outcome"] == "denied"


def _valid_id_numbers():
    from stdnum.cn import ric

    for sequence in range(100, 999):  # 452424: 昭平县's code in 1980 (stdnum checks the year)
        first17 = f"45242419800101{sequence:03d}"
        number = first17 + ric.calc_check_digit(first17 + "0")  # it drops the last digit
        yield number


# ----------------------------------------------------------------------------- Delta Sharing


def test_the_delta_sharing_client_reads_a_granted_table_projected_and_masked(
    served: Served, tmp_path: Path
) -> None:
    import delta_sharing
    import requests

    with served.client("yibao") as yibao:
        applied = _apply(
            yibao,
            resource="licence__licence",
            fields=["licence_number", "holder_name", "status", "division_code"],
            rows={"division_code": ["451102", "451103"]},
        )
        assert applied.status_code == 201, applied.text
    grant = _approve(served, "shenpi", applied.json()["id"])
    profile = tmp_path / "yibao.share"
    profile.write_text(
        json.dumps(
            {
                "shareCredentialsVersion": 1,
                "endpoint": f"{served.base}/delta-sharing",
                "bearerToken": served.token("yibao"),
            }
        )
    )
    client = delta_sharing.SharingClient(str(profile))
    tables = {(t.share, t.schema, t.name) for t in client.list_all_tables()}
    share = f"grant-{grant['id']}"
    assert (share, "licence", "licence__licence") in tables
    assert ("shared", "spatial", "spatial__division") in tables
    assert not any(t[2] == "population__person" for t in tables)

    url = f"{profile}#{share}.licence.licence__licence"
    version = delta_sharing.get_table_version(url)
    frame = delta_sharing.load_as_pandas(url, version=version)
    assert list(frame.columns) == ["licence_number", "holder_name", "status", "division_code"]
    expected = served.clear(
        "SELECT licence_number, holder_name, holder_type FROM licence__licence"
        " WHERE division_code IN ('451102', '451103') ORDER BY licence_number"
    )
    assert sorted(frame["licence_number"]) == [e[0] for e in expected]
    names = dict(zip(frame["licence_number"], frame["holder_name"], strict=True))
    for number, clear_name, holder_type in expected:
        if clear_name and holder_type != "法人":
            assert names[number] != clear_name and names[number][0] == clear_name[0]
    logged = served.last(consumer="yibao", path="/query")
    assert (logged["grant_id"], logged["rows_returned"]) == (grant["id"], len(expected))

    with pytest.raises(requests.HTTPError) as refused:
        delta_sharing.load_as_pandas(url, version=version + 1)
    assert refused.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as other:
        delta_sharing.load_as_pandas(f"{profile}#shared.population.population__person")
    assert other.value.response.status_code == 404
    assert served.last(consumer="yibao", path="population__person")["outcome"] == "refused"


# ----------------------------------------------------------------------------- the OpenAPI, fuzzed


def test_schemathesis_finds_no_server_error_and_every_answer_matches_its_schema(
    served: Served,
) -> None:
    token = served.token("renshe")
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{served.base}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--generation-database",
            "none",
            "--no-color",
            "--request-timeout",
            "30",
            "-H",
            f"Authorization: Bearer {token}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=served.root,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert served.log(consumer="renshe", outcome="refused"), (
        "the fuzzer's bad requests are recorded"
    )
