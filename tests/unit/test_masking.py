"""One masking rule per personal-data kind (citylake.masking), the same in the serving file and
in every report: values checked by hand, and the serving SQL against the reports' path."""

from __future__ import annotations

import duckdb
import pytest

from citylake import masking

HAND_CHECKED = [
    ("id_number", "45242619900101123X", "4524**********123X"),
    ("id_number", "452426900101123", "4524*******1123"),  # 15-digit legacy number
    ("name", "张三", "张*"),
    ("name", "欧阳修", "欧**"),
    ("name", "韦", "韦*"),
    ("phone", "13812345678", "138****5678"),
    ("phone", "0774-5123456", "077*****3456"),
    ("address", "广西壮族自治区贺州市八步区贺街镇城中路6号", "广西壮族自治区贺州市八步区贺街镇"),
    ("address", "八步区贺街镇城中路6号", "八步区贺街镇"),
    ("address", "平桂区西湾街道平桂大道18号", "平桂区西湾街道"),
    ("address", "钟山县公安镇大田村", "钟山县公安镇"),
    ("address", "城中路6号", "***"),
    ("text", "1990-01-01", "1*********"),
    ("text", "13800001234", "138****1234"),
    ("text", "a", "*"),
]


@pytest.mark.parametrize(("kind", "value", "expected"), HAND_CHECKED)
def test_each_kind_masks_as_agreed(kind, value, expected):
    assert masking.mask(value, kind) == expected
    assert masking.mask_values([value, None], kind) == [expected, None]


def test_addresses_are_cut_after_the_township_in_reports_as_in_the_serving_file():
    """The reports used to keep an address's last four characters while the serving file cut it
    after the township: now both run the one SQL rule."""
    values = ["八步区贺街镇城中路6号", "昭平县走马乡新村12号", "富川瑶族自治县富阳镇", None, ""]
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t AS SELECT * FROM unnest(?::VARCHAR[]) AS t(address)", [values])
        served = [
            r[0]
            for r in con.execute(
                f"SELECT {masking.sql('address', 'address')} FROM t ORDER BY rowid"
            ).fetchall()
        ]
    assert served == masking.mask_values(values, "address")
    assert served[:3] == ["八步区贺街镇", "昭平县走马乡", "富川瑶族自治县富阳镇"]


def test_reports_mask_by_kind_or_by_shape_and_leave_numbers_alone():
    assert masking.shown("八步区贺街镇城中路6号", "address") == "八步区贺街镇"
    assert masking.shown("联系13800001234", None) != "联系13800001234"  # a mobile number inside
    assert masking.shown("八步区", None) == "八步区"  # not personal, no personal shape
    assert masking.shown(42, "name") == 42
    assert masking.shown(None, "id_number") is None
