"""Hostile deliveries: files as real department extracts go wrong, planted beside a sample city.

`plant()` adds, to one delivery day of the landing zone, one small file (or link, or folder) per
hard case the landing zone must survive, and returns what each case must become: the reason codes
of its rows in quarantine, the rows that must reach silver, or the refusal. `citylake sample
--hostile` plants them; scripts/hostile_city.py runs the whole city over them and checks every
case and every count (delivered = accepted + quarantined, per file and per batch).

Every planted person, entity, evaluation and parcel has keys of its own (born 1977-07-07, serials
of 9xx), so the cases never touch the sample city's rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from stdnum.cn import ric, uscc

from citylake.config import Environment, SourceContract

REGISTER = "gongan__household_register"
EVALUATIONS = "zhengwu__evaluations"
ORGS = "minzheng__social_organisations"
PARCELS = "ziran__land_parcels"


@dataclass
class Case:
    name: str  # what goes wrong, as a tester would say it
    source_id: str
    entry: str  # the planted file, link or folder, relative to the landing zone
    refused: str | None = None  # the refusal code, when the entry must not be opened
    reasons: dict[int, list[str]] = field(default_factory=dict)  # row number → reason codes
    accepted: list[int] = field(default_factory=list)  # row numbers that must reach silver
    skipped: bool = False  # the same content again: no new batch


def person_id(serial: int) -> str:
    body = f"45242419770707{serial:03d}"  # 昭平县's code before 2002, born 1977-07-07
    return body + ric.calc_check_digit(body + "0")


def credit_code(serial: int) -> str:
    body = f"51451100MJ0009{serial:03d}"
    return body + uscc.calc_check_digit(body)


def _person(contract: SourceContract, serial: int, **changes) -> dict:
    values = {
        "公民身份号码": person_id(serial),
        "姓名": f"测试居民{serial}",
        "性别": "男" if serial % 2 else "女",
        "出生日期": "1977-07-07",
        "民族": "汉族",
        "户号": f"HX{serial}",
        "与户主关系": "户主",
        "户籍地行政区划代码": "451121",
        "户籍地址": "昭平县昭平镇测试路1号",
        "联系电话": "13800138000",
        "登记日期": "2020-05-01",
    }
    values.update(changes)
    return {h: values.get(h) for h in contract.headers}


def _csv(rows: list[dict], headers: list[str], newline: str = "\n", quote: bool = True) -> str:
    """CSV text; quote=False writes values as they are (as a careless export does)."""

    def quoted(value) -> str:
        text = "" if value is None else str(value)
        if quote and any(c in text for c in ',"\n\r'):
            return '"' + text.replace('"', '""') + '"'
        return text

    lines = [",".join(headers), *(",".join(quoted(r[h]) for h in headers) for r in rows)]
    return newline.join(lines) + newline


def plant(
    env: Environment, contracts: dict[str, SourceContract], day: dt.date, outside: Path
) -> list[Case]:
    """Plant every case into `day`'s folders; `outside` is a folder outside the landing zone
    (a link's target). Returns the cases with what each must become."""
    cases: list[Case] = []
    register = contracts[REGISTER]
    folder = _day_folder(env, register, day)

    def write(name: str, text: str, mtime: int | None = None) -> str:
        path = folder / name
        path.write_bytes(text.encode(register.encoding))
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return str(path.relative_to(env.landing))

    headers = register.headers
    twins = [_person(register, 901, 出生日期="1977-13-45"), _person(register, 901)]
    cases.append(
        Case(
            "an invalid row before its valid twin (same key)",
            REGISTER,
            write("hostile_twins.csv", _csv(twins, headers)),
            reasons={1: ["birth_date.malformed_date"]},
            accepted=[2],
        )
    )
    first = _csv([_person(register, 902), _person(register, 903)], headers)
    cases.append(
        Case(
            "a file, then its same-day correction whose name sorts first",
            REGISTER,
            write("z_extract.csv", first, mtime=1_764_000_000),
            accepted=[1, 2],
        )
    )
    cases.append(
        Case(
            "the correction (arrived ten minutes later): 测试居民902 renamed",
            REGISTER,
            write(
                "a_correction.csv",
                _csv([_person(register, 902, 姓名="测试居民九〇二")], headers),
                mtime=1_764_000_600,
            ),
            accepted=[1],
        )
    )
    cases.append(
        Case(
            "the same file placed twice in the day folder",
            REGISTER,
            write("z_extract (1).csv", first, mtime=1_764_000_900),
            skipped=True,
        )
    )
    quotes = [_person(register, 904, 姓名='张"三'), _person(register, 905, 户籍地址='昭平镇"幸福')]
    cases.append(
        Case(
            "stray quotes in unquoted fields, CR-only line ends (classic Mac export)",
            REGISTER,
            write("mac_export.csv", _csv(quotes, headers, newline="\r", quote=False)),
            accepted=[1, 2],
        )
    )
    hygiene = [
        _person(register, 906, 姓名="测试\x00居民\u200b906", 民族='=HYPERLINK("http://x.invalid")'),
        _person(register, 907, 公民身份号码=person_id(907)[:17], 户号="@SUM(1+1)"),
    ]
    cases.append(
        Case(
            "a NUL and a zero-width space in a name; values that start a spreadsheet formula",
            REGISTER,
            write("control_chars.csv", _csv(hygiene, headers)),
            reasons={2: ["id_number.format"]},
            accepted=[1],
        )
    )
    cut = _csv([_person(register, 908), _person(register, 909)], headers)
    cases.append(
        Case(
            "a file cut off in its last row",
            REGISTER,
            write("cut_off.csv", cut[: cut.rindex("\n", 0, -1) + 30]),
            reasons={  # the cut took the required fields after the ID number and name with it
                2: sorted(
                    [
                        "_row.malformed_row",
                        "birth_date.missing",
                        "division_code.missing",
                        "household_id.missing",
                    ]
                )
            },
            accepted=[1],
        )
    )
    target = outside / "outside_the_landing_zone.csv"
    target.write_text(_csv([_person(register, 910)], headers), encoding="utf-8")
    for name, points_to in (("linked.csv", target), ("passwd.csv", Path("/etc/passwd"))):
        (folder / name).symlink_to(points_to)
        cases.append(
            Case(
                f"a symbolic link to {points_to}",
                REGISTER,
                str((folder / name).relative_to(env.landing)),
                refused="symlink",
            )
        )
    (folder / ".upload.csv.part").write_text(_csv([_person(register, 911)], headers))
    cases.append(
        Case(
            "a hidden file (an upload in progress)",
            REGISTER,
            str((folder / ".upload.csv.part").relative_to(env.landing)),
            refused="hidden",
        )
    )
    (folder / "older").mkdir()
    cases.append(
        Case(
            "a folder inside the day folder",
            REGISTER,
            str((folder / "older").relative_to(env.landing)),
            refused="folder",
        )
    )
    cases += [
        _evaluations(env, contracts[EVALUATIONS], day),
        _workbook(env, contracts[ORGS], day),
        _parcels(env, contracts[PARCELS], day),
    ]
    return cases


def _day_folder(env: Environment, contract: SourceContract, day: dt.date) -> Path:
    folder = env.landing / contract.department / contract.source_name / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _evaluations(env: Environment, contract: SourceContract, day: dt.date) -> Case:
    def evaluation(number: int) -> dict:
        return {
            "评价编号": f"EX{number}",
            "办件编号": f"CX{number}",
            "评价时间": f"{day - dt.timedelta(days=1)} 10:00:00",
            "评价渠道": "线上",
            "评价等级": "满意",
            "评价分值": 4,
        }

    lines = [
        json.dumps(evaluation(1), ensure_ascii=False),
        "{'评价编号': 'EX2', '办件编号': 'CX2', '评价等级': '满意'}",
        json.dumps(evaluation(3), ensure_ascii=False)[:-1] + ', "评价等级": "不满意"}',
    ]
    path = _day_folder(env, contract, day) / "hostile.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode(contract.encoding))
    return Case(
        "JSON lines: single quotes (not JSON), a repeated key",
        contract.source_id,
        str(path.relative_to(env.landing)),
        reasons={2: ["_row.not_json_object"], 3: ["_row.duplicate_json_key"]},
        accepted=[1],
    )


def _workbook(env: Environment, contract: SourceContract, day: dt.date) -> Case:
    from openpyxl import Workbook

    def org(serial: int, **values) -> list:
        record = dict.fromkeys(contract.headers)
        record.update(
            {
                "统一社会信用代码": credit_code(serial),
                "社会组织名称": f"贺州市测试协会{serial}",
                "社会组织类型": "社会团体",
                "成立登记日期": dt.datetime(2015, 3, 9),
                "登记管理机关行政区划代码": "451102",
                "登记状态": "正常",
                **values,
            }
        )
        return [record[h] for h in contract.headers]

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = contract.sheet or contract.title[:31]
    sheet.append([f"{contract.title}（测试）"])  # a title row and a blank row above the header
    sheet.append([])
    sheet.append(contract.headers)
    sheet.append(org(1))
    sheet.append(org(2, **{"注册资金（万元）": "=D4*0"}))  # a formula saved without its value
    workbook.create_sheet("填报说明").append(["每月5日前报送"])
    path = _day_folder(env, contract, day) / "hostile.xlsx"
    workbook.save(path)
    return Case(
        "XLSX: two title rows, a second sheet, a formula cell without its value",
        contract.source_id,
        str(path.relative_to(env.landing)),
        reasons={5: ["registered_capital.formula_without_value"]},
        accepted=[4],
    )


def _parcels(env: Environment, contract: SourceContract, day: dt.date) -> Case:
    def parcel(number: int, ring: list) -> dict:
        properties = {"宗地代码": f"451102999999GB9{number:04d}", "所在行政区划代码": "451102"}
        geometry = {"type": "Polygon", "coordinates": [ring]}
        return {"type": "Feature", "properties": properties, "geometry": geometry}

    square = [[111.5, 24.4], [111.501, 24.4], [111.501, 24.401], [111.5, 24.401], [111.5, 24.4]]
    bowtie = [[111.5, 24.4], [111.501, 24.401], [111.501, 24.4], [111.5, 24.401], [111.5, 24.4]]
    beijing = [[116.3, 39.9], [116.4, 39.9], [116.4, 40.0], [116.3, 40.0], [116.3, 39.9]]
    features = [parcel(1, square), parcel(2, bowtie), parcel(3, beijing)]
    path = _day_folder(env, contract, day) / "hostile.geojson"
    collection = {"type": "FeatureCollection", "features": features}
    path.write_bytes(json.dumps(collection, ensure_ascii=False).encode(contract.encoding))
    return Case(
        "GeoJSON: a self-intersecting polygon (bow tie), a parcel in Beijing",
        contract.source_id,
        str(path.relative_to(env.landing)),
        reasons={2: ["geometry.self_intersection"], 3: ["geometry.outside_city"]},
        accepted=[1],
    )
