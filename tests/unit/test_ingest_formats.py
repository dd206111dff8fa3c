"""Every delivery format into bronze (XLSX, GeoJSON, quoted CSV), and silver's typing of numbers,
moments and geometries. Values are the ones a person reads in the file; python's csv module is the
oracle of record counting."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from pipelines.delivery import DeliveryError
from pipelines.readers.text import _RecordCounter
from pipelines.readers.xlsx import cell_text

DAY = dt.date(2026, 11, 27)
ORGS = "minzheng__social_organisations"
PARCELS = "ziran__land_parcels"


# ----------------------------------------------------------------------------- no JVM


@pytest.mark.parametrize(
    "value, text",
    [
        (None, None),
        ("  张三 ", "  张三 "),  # text as delivered; silver trims
        (12, "12"),
        (12.0, "12"),  # no spurious '.0'
        (123.45, "123.45"),
        (0.1 + 0.2, "0.3"),  # Excel shows 15 significant digits
        (-3.5, "-3.5"),
        (45047, "45047"),  # a date typed as a plain number stays its serial
        (True, "TRUE"),
        (dt.datetime(2023, 5, 1), "2023-05-01"),  # a date cell
        (dt.datetime(2023, 5, 1, 8, 30), "2023-05-01 08:30:00"),
        (dt.date(2023, 5, 1), "2023-05-01"),
        (dt.time(8, 30), "08:30:00"),
    ],
)
def test_cell_text_is_what_the_department_sees(value, text):
    assert cell_text(value) == text


def count_records(data: bytes, chunk: int) -> int:
    counter = _RecordCounter(quote_aware=True)
    for start in range(0, len(data), chunk):
        counter.feed(data[start : start + chunk])
    return counter.close()


FIELD = st.text(alphabet=st.sampled_from(list('ab,"\n 张')), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(FIELD, min_size=1, max_size=4), min_size=1, max_size=12),
    chunk=st.integers(min_value=1, max_value=40),
    blank_lines=st.booleans(),
    line_end=st.sampled_from(["\n", "\r\n"]),
)
def test_record_count_agrees_with_the_csv_module(rows, chunk, blank_lines, line_end):
    """Quoted fields with commas, quotes and newlines, blank lines between records, Unix or
    Windows line ends, any chunk boundary: as many records as Python's csv module reads (it skips
    blank lines too)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_end)
    for row in rows:
        if row == [""]:
            row = ['""']  # a lone empty field would be a blank line, i.e. no record
        writer.writerow(row)
        if blank_lines:
            buffer.write(line_end)
    text = buffer.getvalue()
    expected = sum(1 for r in csv.reader(io.StringIO(text, newline="")) if r)
    assert count_records(text.encode("gb18030"), chunk) == expected


RAW = st.text(alphabet=st.sampled_from(list('ab,"\n 张')), max_size=60)


@settings(max_examples=500, deadline=None)
@given(text=RAW, chunk=st.integers(min_value=1, max_value=40))
def test_record_count_of_any_text_agrees_with_the_csv_module(text, chunk):
    """Text no CSV writer made: stray quotes inside unquoted fields (张"三), text after a closing
    quote, quotes left open. A quote opens a field only at its start, as in Python's reader and
    Spark's; the counts agree on every input."""
    expected = sum(1 for r in csv.reader(io.StringIO(text, newline="")) if r)
    assert count_records(text.encode("gb18030"), chunk) == expected


@pytest.mark.parametrize(
    "data, line",
    [(b"a,b\r\n1,x\ry\r\n", 2), (b"a,b\n1,2\n3,4\r5\n", 3), (b"a,b\n1,2\rx", 2)],
)
def test_a_carriage_return_inside_a_line_is_found_by_line(data, line):
    counter = _RecordCounter(quote_aware=True)
    counter.feed(data)
    counter.close()
    assert counter.lone_cr_line == line


def test_a_quote_left_open_at_the_end_is_one_record():
    data = b'a,b\n1,2\n3,"cut off in the mid\ndle'
    assert count_records(data, 5) == 3  # header, one row, the truncated row


# ----------------------------------------------------------------------------- Spark


def write_xlsx(path, rows, title="社会组织登记信息"):
    """A workbook with one sheet (by default the one the social organisations' contract names)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def landing(env, contract, name: str):
    folder = env.landing / contract.department / contract.source_name / DAY.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def bronze_rows(spark, env, source_id):
    from citylake.lake import Lake

    return {
        r["_row_number"]: r.asDict() for r in Lake(env, spark).read("bronze", source_id).collect()
    }


@pytest.mark.spark
def test_xlsx_rows_keep_sheet_row_numbers_values_as_seen_and_extra_columns(spark, data_root):
    from citylake import flow
    from citylake.config import settings

    env, _, contracts = settings()
    contract = contracts[ORGS]
    headers = [h for h in contract.headers if h != "住所"]  # an optional column left out
    headers.insert(3, "备注")  # a column the contract does not know
    code = "51451100MJ0000000X"

    def row(**values):
        record = dict.fromkeys(headers)
        record.update(values)
        return [record[h] for h in headers]

    path = write_xlsx(
        landing(env, contract, "orgs.xlsx"),
        [
            headers,
            row(
                统一社会信用代码=code,
                社会组织名称="贺州市书法家协会",
                社会组织类型="社会团体",
                备注="年检合格",
                **{"注册资金（万元）": 3.0},
                成立登记日期=dt.datetime(2015, 3, 9),
                登记管理机关行政区划代码=451102,
            ),
            [None] * len(headers),  # a blank row: no record, but row numbers go on
            row(
                统一社会信用代码="51451100MJ0000001X",
                社会组织名称="贺州市围棋协会",
                社会组织类型="社会团体",
                **{"注册资金（万元）": 12.35},
                成立登记日期=42000,  # an Excel serial typed as a number
                登记管理机关行政区划代码="451121",
            ),
            [*row(统一社会信用代码="X"), "a value beyond the header"],
        ],
    )
    (summary,) = flow.ingest(ORGS, DAY)["files"]
    assert summary["rows_delivered"] == summary["rows_bronze"] == "3"
    assert summary["extra_columns"] == ["备注"] and summary["absent_columns"] == ["住所"]
    rows = bronze_rows(spark, env, ORGS)
    assert sorted(rows) == [2, 4, 5]  # the sheet's own row numbers
    first, second, wide = rows[2], rows[4], rows[5]
    assert first["credit_code"] == code and first["registered_capital"] == "3"
    assert first["registration_date"] == "2015-03-09" and first["division_code"] == "451102"
    assert first["address"] is None and first["_extra_columns"] == {"备注": "年检合格"}
    assert first["_malformed_line"] is None and first["_source_file"].endswith(path.name)
    assert (second["registered_capital"], second["registration_date"]) == ("12.35", "42000")
    assert json.loads(wide["_malformed_line"])[-1] == "a value beyond the header"
    assert not (env.root / "staging" / ORGS).exists() or not any(
        (env.root / "staging" / ORGS).iterdir()
    )  # staging removed once bronze is written


@pytest.mark.spark
def test_xlsx_without_a_required_column_or_not_a_workbook_fails_naming_the_file(spark, data_root):
    from citylake import flow
    from citylake.config import settings

    env, _, contracts = settings()
    contract = contracts[ORGS]
    path = write_xlsx(
        landing(env, contract, "orgs.xlsx"), [[h for h in contract.headers if h != "社会组织名称"]]
    )
    with pytest.raises(DeliveryError, match=r"orgs\.xlsx: sheet '.*', row 1 \(header\): missing "):
        flow.ingest(ORGS, DAY)
    write_xlsx(path, [contract.headers], title="Sheet1")  # the declared sheet renamed
    with pytest.raises(
        DeliveryError, match=r"orgs\.xlsx: no sheet named '社会组织登记信息'.*\['Sheet1'\]"
    ):
        flow.ingest(ORGS, DAY)
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(DeliveryError, match=r"orgs\.xlsx: not a readable XLSX workbook"):
        flow.ingest(ORGS, DAY)


def feature(properties, geometry, kind="Feature"):
    return {"type": kind, "properties": properties, "geometry": geometry}


SQUARE = {
    "type": "Polygon",
    "coordinates": [[[111.5, 24.4], [111.6, 24.4], [111.6, 24.5], [111.5, 24.5], [111.5, 24.4]]],
}


@pytest.mark.spark
def test_geojson_features_become_rows_with_geometry_as_json_text(spark, data_root):
    from citylake import flow
    from citylake.config import settings

    env, _, contracts = settings()
    contract = contracts[PARCELS]
    properties = {"宗地代码": "451102001001GB00001", "所在行政区划代码": "451102"}
    collection = {
        "type": "FeatureCollection",
        "features": [
            feature({**properties, "宗地面积（平方米）": 1234.5, "图斑编号": "T-7"}, SQUARE),
            feature({**properties, "宗地代码": "451102001001GB00002"}, None),
            feature({**properties, "宗地代码": "451102001001GB00003"}, SQUARE, kind="Point"),
        ],
    }
    path = landing(env, contract, "parcels.geojson")
    path.write_text(json.dumps(collection, ensure_ascii=False), encoding="utf-8")
    (summary,) = flow.ingest(PARCELS, DAY)["files"]
    assert summary["rows_delivered"] == summary["rows_bronze"] == "3"
    assert summary["extra_columns"] == ["图斑编号"]
    rows = bronze_rows(spark, env, PARCELS)
    assert sorted(rows) == [1, 2, 3]  # feature positions
    assert rows[1]["parcel_id"] == "451102001001GB00001" and rows[1]["area_m2"] == "1234.5"
    assert json.loads(rows[1]["geometry"]) == SQUARE
    assert rows[1]["_extra_columns"] == {"图斑编号": "T-7"}
    assert rows[2]["geometry"] is None and rows[2]["_malformed_line"] is None
    assert json.loads(rows[3]["_malformed_line"])["type"] == "Point"  # not a Feature


@pytest.mark.spark
@pytest.mark.parametrize(
    "text, message",
    [
        ('{"type": "Feature", "properties": {}, "geometry": null}', "FeatureCollection"),
        ('{"type": "FeatureCollection", "features": [{"type": "Feat', "not one valid JSON"),
        ('[{"type": "FeatureCollection"}]', "FeatureCollection"),
    ],
)
def test_geojson_that_is_no_feature_collection_fails_naming_the_file(
    spark, data_root, text, message
):
    from citylake import flow
    from citylake.config import settings

    env, _, contracts = settings()
    landing(env, contracts[PARCELS], "parcels.geojson").write_text(text, encoding="utf-8")
    with pytest.raises(DeliveryError, match=rf"parcels\.geojson: .*{message}"):
        flow.ingest(PARCELS, DAY)


HOTLINE = "rexian__hotline_tickets"
# What every ticket of these tests says besides its number.
TICKET = {"来电时间": "2026-11-26 08:00:00", "诉求分类": "咨询", "工单状态": "已办结"}


@pytest.mark.spark
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_json_lines_keep_unknown_keys_and_malformed_lines(spark, data_root, encoding):
    """A key the contract does not know is kept in _extra_columns and reported, as a CSV column
    is; a line that is no JSON object is kept whole for quarantine; blank lines are no records."""
    from citylake.config import settings
    from citylake.lake import Lake
    from pipelines.ingest import ingest_source

    env, _, contracts = settings()
    contract = contracts[HOTLINE].model_copy(update={"encoding": encoding})
    lines = [
        json.dumps(
            {"工单编号": "T1", **TICKET, "坐席": "A-7", "附件": {"张数": 2}}, ensure_ascii=False
        ),
        "",
        json.dumps(
            {"工单编号": "T2", **TICKET, "来电人姓名": None, "坐席": None}, ensure_ascii=False
        ),
        "[1, 2]",
        '{"工单编号": "T3", "来电时间": "2026-11-26 09:',  # cut off: the last line
    ]
    text = "\n".join(lines)
    path = landing(env, contract, "tickets.jsonl")
    path.write_bytes(text.encode(encoding))
    (summary,), _ = ingest_source(Lake(env, spark), contract, DAY)
    assert summary["rows_delivered"] == summary["rows_bronze"] == "4"
    assert summary["extra_columns"] == ["坐席", "附件"]
    assert "办结时间" in summary["absent_columns"] and "工单编号" not in summary["absent_columns"]
    rows = bronze_rows(spark, env, HOTLINE)
    assert sorted(rows) == [1, 2, 3, 4]  # the blank line is no record
    first, second, array, cut = rows[1], rows[2], rows[3], rows[4]
    assert first["ticket_number"] == "T1" and first["category"] == "咨询"
    assert first["_extra_columns"]["坐席"] == "A-7"
    assert json.loads(first["_extra_columns"]["附件"]) == {"张数": 2}
    assert first["_malformed_line"] is None
    assert second["ticket_number"] == "T2" and second["caller_name"] is None
    assert second["_extra_columns"] is None  # a null value is no extra value
    assert array["_malformed_line"] == "[1, 2]" and array["ticket_number"] is None
    assert cut["_malformed_line"] == lines[-1]


@pytest.mark.spark
def test_json_lines_without_a_required_key_fail_naming_the_file(spark, data_root):
    from citylake import flow
    from citylake.config import settings

    env, _, contracts = settings()
    path = landing(env, contracts[HOTLINE], "tickets.jsonl")
    path.write_text(json.dumps({"工单号": "T1", **TICKET}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DeliveryError, match=r"tickets\.jsonl: keys .*missing required .*工单编号"):
        flow.ingest(HOTLINE, DAY)


# ----------------------------------------------------------------------------- silver typing


def typed(spark, function, texts, type_="string"):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], f"i int, t {type_}")
    return [r[0] for r in frame.orderBy("i").select(function(F.col("t"))).collect()]


@pytest.mark.spark
def test_decimals_and_integers(spark):
    from decimal import Decimal

    from pipelines import standardize as S

    texts = ["12.5", " -3 ", "1,234.50", "１２", "1e3", "0.12345", "12.5.1", "abc", "", None]
    assert typed(spark, S.parse_decimal, texts) == [
        Decimal("12.5000"),
        Decimal("-3.0000"),
        Decimal("1234.5000"),
        Decimal("12.0000"),
        Decimal("1000.0000"),
        Decimal("0.1235"),  # DECIMAL(18,4), half-up
        None,
        None,
        None,
        None,
    ]
    # a contract's `scale: 7` (degrees of longitude and latitude) keeps ~1 cm, not ~11 m
    coordinates = typed(spark, lambda c: S.parse_decimal(c, 7), ["111.958589", "24.33739855"])
    assert coordinates == [Decimal("111.9585890"), Decimal("24.3373986")]
    assert typed(spark, S.parse_integer, ["12", "12.0", "1,200", "12.5", "x", "9" * 25]) == [
        12,
        12,
        1200,
        None,
        None,
        None,  # does not fit a BIGINT
    ]


@pytest.mark.spark
def test_timestamps_in_the_forms_departments_send(spark):
    from pyspark.sql import functions as F

    from pipelines import standardize as S

    # Compared as wall-clock text in the session's zone (Asia/Shanghai): collect() would shift
    # a timestamp into this process's zone.
    moment = "2023-05-01 08:30:00.000"
    midnight = "2023-05-01 00:00:00.000"
    cases = {
        "2023-05-01 08:30:00": moment,
        "2023/5/1 8:30": moment,
        "2023-05-01T08:30:00": moment,
        "2023-05-01T00:30:00Z": moment,  # UTC → Asia/Shanghai
        "2023-05-01T08:30:00+08:00": moment,
        "2023-05-01 08:30:00.250": "2023-05-01 08:30:00.250",
        "2023年5月1日 8时30分": moment,
        "20230501083000": moment,
        "45047.3541666667": moment,  # Excel serial with a day fraction
        "45047": midnight,
        "2023-05-01": midnight,
        "01/05/2023 8:30": None,  # day and month order unknowable
        "2023.5.1 8:30": None,
        "2023-05 08:30": None,
        "2023-02-30 08:30:00": None,
        "2023-05-01 25:00:00": None,
        "now": None,
    }

    def wall_clock(column):
        return F.date_format(S.parse_timestamp(column), "yyyy-MM-dd HH:mm:ss.SSS")

    assert dict(zip(cases, typed(spark, wall_clock, list(cases)), strict=True)) == cases


def ring(*points):
    return [list(p) for p in points]


@pytest.mark.spark
def test_geometry_validation(spark):
    from pipelines import standardize as S

    square = SQUARE["coordinates"][0]
    cases = {
        json.dumps(SQUARE): True,
        json.dumps({"type": "MultiPolygon", "coordinates": [[square], [square]]}): True,
        json.dumps(
            {"type": "Polygon", "coordinates": [[[1, 2, 30], [3, 2, 30], [3, 4, 30], [1, 2, 30]]]}
        ): True,
        json.dumps({"type": "Polygon", "coordinates": [square[:-1]]}): False,  # not closed
        json.dumps({"type": "Polygon", "coordinates": [square[:2] + square[:1]]}): False,  # < 4
        json.dumps({"type": "Polygon", "coordinates": []}): False,
        json.dumps({"type": "Polygon"}): False,
        json.dumps(
            {"type": "Polygon", "coordinates": [[[200, 24], [201, 24], [201, 25], [200, 24]]]}
        ): False,
        json.dumps({"type": "Point", "coordinates": [111.5, 24.4]}): False,
        json.dumps({"type": "MultiPolygon", "coordinates": [square]}): False,  # one level short
        '{"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 4], [1, 2]]': False,  # cut off
        "POLYGON ((1 2, 3 2, 3 4, 1 2))": False,  # WKT, not GeoJSON
    }
    assert dict(zip(cases, typed(spark, S.is_valid_geometry, list(cases)), strict=True)) == cases


@pytest.mark.spark
def test_silver_types_and_reasons_of_a_parcel_delivery(spark):
    """The contract's decimal and geometry columns typed in silver, each failure a reason."""
    from decimal import Decimal

    from citylake.config import load_city, load_contracts
    from pipelines import silver
    from pipelines import standardize as S

    contract = load_contracts()[PARCELS]
    good = {"parcel_id": "P1", "division_code": "451102", "area_m2": "1,234.5"}
    rows = [
        {**good, "geometry": json.dumps(SQUARE)},
        {**good, "parcel_id": "P2", "area_m2": "12 m2", "geometry": '{"type": "Point"}'},
        {**good, "parcel_id": "P3", "geometry": None},
    ]
    schema = ", ".join(f"{c} string" for c in contract.column_names)
    bronze = spark.createDataFrame(
        [
            (*[r.get(c) for c in contract.column_names], None, "f.geojson", "b1", i + 1)
            for i, r in enumerate(rows)
        ],
        f"{schema}, _malformed_line string, _source_file string, _batch_id string, _row_number long",
    ).selectExpr("*", "current_timestamp() AS _ingested_at", "date'2026-11-27' AS _delivery_date")
    standardized = silver.standardize(
        bronze, contract, load_city(), S.division_eras_frame(spark), DAY
    )
    reasons = {r["_row_number"]: sorted(r["_reasons"]) for r in standardized.collect()}
    assert reasons == {
        1: [],
        2: ["area_m2.malformed_number", "geometry.malformed_geometry"],
        3: ["geometry.missing"],
    }
    (accepted,) = silver.accepted(standardized).collect()
    assert accepted["area_m2"] == Decimal("1234.5000")
    assert json.loads(accepted["geometry"]) == SQUARE
    from citylake.reasons import reason_texts

    texts = reason_texts()
    assert all(code.split(".")[1] in texts for codes in reasons.values() for code in codes)


@pytest.mark.spark
def test_future_and_malformed_timestamps_are_reasons(spark):
    from citylake.config import load_city, load_contracts
    from pipelines import silver
    from pipelines import standardize as S

    (contract,) = [
        c for c in load_contracts().values() if any(col.type == "timestamp" for col in c.columns)
    ][:1]
    column = next(c.name for c in contract.columns if c.type == "timestamp")
    values = ["2026-11-27 23:59:59", "2026-11-28 00:00:00", "27/11/2026 10:00"]
    schema = ", ".join(f"{c} string" for c in contract.column_names)
    rng = random.Random(1)
    bronze = spark.createDataFrame(
        [
            (
                *[v if c == column else f"k{rng.random()}" for c in contract.column_names],
                None,
                "f.csv",
                "b1",
                i + 1,
            )
            for i, v in enumerate(values)
        ],
        f"{schema}, _malformed_line string, _source_file string, _batch_id string, _row_number long",
    ).selectExpr("*", "current_timestamp() AS _ingested_at", "date'2026-11-27' AS _delivery_date")
    standardized = silver.standardize(
        bronze, contract, load_city(), S.division_eras_frame(spark), DAY
    )
    reasons = {r["_row_number"]: r["_reasons"] for r in standardized.collect()}
    assert f"{column}.future_timestamp" not in reasons[1]  # the last second of the delivery day
    assert f"{column}.malformed_timestamp" not in reasons[1]
    assert f"{column}.future_timestamp" in reasons[2]
    assert f"{column}.malformed_timestamp" in reasons[3]
