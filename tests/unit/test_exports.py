"""Spreadsheet exports: what a spreadsheet would evaluate is made text, numbers stay numbers."""

from __future__ import annotations

import csv

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citylake.exports import formula_safe, write_csv


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("=1+1", "'=1+1"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("+86 138 0013 8000", "'+86 138 0013 8000"),
        ("-2+3", "'-2+3"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
        ("-12.5", "-12.5"),
        ("+3", "+3"),
        ("-1,000", "-1,000"),
        ("1e-5", "1e-5"),
        ("贺州市=八步区", "贺州市=八步区"),
        ("", ""),
        (None, None),
        (42, "42"),
    ],
)
def test_formula_prefixes_are_neutralized_and_numbers_kept(value, shown):
    assert formula_safe(value) == shown


@given(st.text())
def test_no_text_leaves_as_a_formula_and_only_the_apostrophe_is_added(text):
    safe = formula_safe(text)
    assert safe in (text, "'" + text)
    if safe == text and text.startswith(("=", "+", "-", "@", "\t", "\r")):
        float(text.replace(",", ""))  # left as it was only because it is a number


def test_write_csv_round_trips_through_the_csv_module(tmp_path):
    path = tmp_path / "out" / "list.csv"
    rows = [["=cmd|' /C calc'!A0", "第一行\n第二行", None], ["-3", '含"引号"', "@x"]]
    assert write_csv(path, ["甲", "乙", "丙"], rows) == 2
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        read = list(csv.reader(handle))
    assert read == [
        ["甲", "乙", "丙"],
        ["'=cmd|' /C calc'!A0", "第一行\n第二行", ""],
        ["-3", '含"引号"', "'@x"],
    ]
    assert [p.name for p in path.parent.iterdir()] == ["list.csv"]  # no partial file left
