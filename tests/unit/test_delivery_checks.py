"""Bad deliveries fail loudly before Spark touches them, naming the file, line and column."""

from __future__ import annotations

import datetime as dt

import pytest

from citylake.config import load_contracts, load_environment
from pipelines.delivery import DeliveryError
from pipelines.ingest import find_deliveries
from pipelines.readers.text import inspect_delivery

CONTRACT = load_contracts()["gongan__household_register"]
HEADER = ",".join(CONTRACT.headers)
ROW = (
    "452424199001011238,张三,男,1990-01-01,汉族,H1,户主,451121,昭平县富罗镇,13800138000,2020-05-01"
)


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_counts_rows_and_hashes(tmp_path):
    path = write(tmp_path / "register.csv", f"{HEADER}\n{ROW}\n{ROW}\n\n")
    delivery = inspect_delivery(path, CONTRACT, tmp_path)
    assert delivery.rows == 2  # the blank line is not a record
    assert delivery.source_file == "register.csv"
    assert len(delivery.sha256) == 64


def test_last_line_without_newline_counts(tmp_path):
    path = write(tmp_path / "register.csv", f"{HEADER}\r\n{ROW}\r\n{ROW}")
    assert inspect_delivery(path, CONTRACT, tmp_path).rows == 2


def test_wrong_encoding_names_file_and_line(tmp_path):
    path = write(tmp_path / "register.csv", f"{HEADER}\n{ROW}\n{ROW}\n", encoding="gbk")
    with pytest.raises(DeliveryError) as error:
        inspect_delivery(path, CONTRACT, tmp_path)
    message = str(error.value)
    assert str(path) in message and "line 1" in message and "utf-8" in message


def test_wrong_encoding_reports_the_line_of_the_first_bad_byte(tmp_path):
    text = f"{HEADER}\n{ROW}\n".encode() + "王五".encode("gbk") + b",x\n"
    path = tmp_path / "register.csv"
    path.write_bytes(text)
    with pytest.raises(DeliveryError, match="line 3"):
        inspect_delivery(path, CONTRACT, tmp_path)


def test_missing_required_column_is_named(tmp_path):
    header = HEADER.replace(",户号", "")
    path = write(tmp_path / "register.csv", f"{header}\n")
    with pytest.raises(
        DeliveryError, match=r"line 1 \(header\): missing required columns \['户号'\]"
    ):
        inspect_delivery(path, CONTRACT, tmp_path)


def test_missing_optional_column_is_reported_not_fatal(tmp_path):
    header = HEADER.replace(",联系电话", "")
    layout = inspect_delivery(write(tmp_path / "r.csv", f"{header}\n"), CONTRACT, tmp_path).layout
    assert layout.absent == ("联系电话",) and layout.extra == ()
    assert "phone" not in layout.positions and layout.positions["registered_date"] == 9


def test_unexpected_column_is_kept_and_reported(tmp_path):
    path = write(tmp_path / "register.csv", f"备注,{HEADER}\n")
    delivery = inspect_delivery(path, CONTRACT, tmp_path)
    assert delivery.layout.extra == ("备注",) and delivery.rows == 0
    assert delivery.layout.positions["id_number"] == 1  # matched by header, not by position


def test_repeated_header_is_named(tmp_path):
    path = write(tmp_path / "register.csv", f"{HEADER},姓名\n")
    with pytest.raises(DeliveryError, match=r"columns \['姓名'\] appear more than once"):
        inspect_delivery(path, CONTRACT, tmp_path)


def test_quoted_fields_with_newlines_are_one_record_each(tmp_path):
    quoted = ROW.replace("昭平县富罗镇", '"昭平县\n富罗镇 ""东街"""')
    path = write(tmp_path / "register.csv", f"{HEADER}\r\n{quoted}\r\n\r\n{ROW}")
    assert inspect_delivery(path, CONTRACT, tmp_path).rows == 2


def test_file_ending_inside_a_character_is_named(tmp_path):
    path = tmp_path / "register.csv"
    path.write_bytes(f"{HEADER}\n{ROW}\n".encode() + "张".encode()[:2])
    with pytest.raises(DeliveryError, match="ends inside a utf-8 character"):
        inspect_delivery(path, CONTRACT, tmp_path)


def test_empty_file(tmp_path):
    path = write(tmp_path / "register.csv", "")
    with pytest.raises(DeliveryError, match="empty"):
        inspect_delivery(path, CONTRACT, tmp_path)


def test_missing_delivery_names_the_folder(tmp_path):
    env = load_environment("local").model_copy(update={"data_root": tmp_path})
    with pytest.raises(DeliveryError) as error:
        find_deliveries(env, CONTRACT, dt.date(2026, 11, 27))
    assert "gongan/household_register/2026-11-27" in str(error.value)
    assert "no file delivered" in str(error.value)


def test_a_weekly_source_without_a_delivery_today_has_nothing_to_ingest(tmp_path):
    env = load_environment("local").model_copy(update={"data_root": tmp_path})
    weekly = load_contracts()["ziran__land_parcels"]
    assert weekly.frequency == "weekly"
    assert find_deliveries(env, weekly, dt.date(2026, 11, 27)) == []


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(DeliveryError, match="cannot read"):
        inspect_delivery(tmp_path / "gone.csv", CONTRACT, tmp_path)
