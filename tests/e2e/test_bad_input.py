"""Bad deliveries, each written into a fresh landing zone and run through the real steps (Spark,
Delta): the file fails loudly naming itself, or every row is accounted for. In every case
delivered = bronze = accepted + quarantined, and nothing is lost without a trace."""

from __future__ import annotations

import datetime as dt

import pytest
from stdnum.cn import ric

pytestmark = pytest.mark.spark

SOURCE = "gongan__household_register"
DAY = dt.date(2026, 11, 27)
NEXT_DAY = DAY + dt.timedelta(days=1)


def id_number(serial: int) -> str:
    """A valid GB 11643 number of 昭平县 (452424, before 2002), born 1990-01-01."""
    body = f"45242419900101{serial:03d}"
    return body + ric.calc_check_digit(body + "0")


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
    from pipelines.lake import Lake

    env, _, contracts = settings()
    return env, contracts[SOURCE], Lake(env, spark)


def run(day=DAY) -> tuple[dict, dict]:
    from pipelines import flow

    return flow.ingest(SOURCE, day), flow.standardize(SOURCE, day)


def accounted(lake, ingested: dict, standardized: dict) -> dict:
    """Counts of every hop for the batches just run, each from its own table."""
    from pyspark.sql import functions as F

    batches = [f["batch_id"] for f in ingested["files"] if not f["skipped"]]
    delivered = sum(int(f["rows_delivered"]) for f in ingested["files"] if not f["skipped"])
    in_batches = F.col("_batch_id").isin(batches)
    bronze = lake.read("bronze", SOURCE).where(in_batches).count()
    quarantined = lake.read("quarantine", SOURCE).where(in_batches).count()
    accepted = sum(b["accepted"] for b in standardized["batches"])
    assert delivered == bronze == accepted + quarantined
    assert sum(b["quarantined"] for b in standardized["batches"]) == quarantined
    return {"delivered": delivered, "accepted": accepted, "quarantined": quarantined}


def reasons_by_row(lake) -> dict[int, list[str]]:
    rows = lake.read("quarantine", SOURCE).collect()
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
    from pipelines import flow

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
    from pipelines import flow

    env, contract, lake = city
    headers = [h for h in contract.headers if h != "户号"]
    path = deliver(env, contract, register([row(1)], headers))
    with pytest.raises(flow.DeliveryError) as error:
        flow.ingest(SOURCE, DAY)
    assert str(path) in str(error.value) and "missing required columns ['户号']" in str(error.value)
    nothing_written(lake, env, path)


def test_empty_file_fails_naming_it(city):
    from pipelines import flow

    env, contract, lake = city
    path = deliver(env, contract, b"")
    with pytest.raises(flow.DeliveryError, match=rf"{path}: the file is empty \(0 bytes\)"):
        flow.ingest(SOURCE, DAY)
    nothing_written(lake, env, path)


def test_header_only_file_is_a_batch_of_no_rows(city):
    from pipelines import flow
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
