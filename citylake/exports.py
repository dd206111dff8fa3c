"""Text meant for spreadsheets: every value neutralized against formula (CSV) injection.

A cell whose text begins with `=`, `+`, `-`, `@`, a tab or a carriage return is taken by Excel,
WPS and LibreOffice as a formula (`=HYPERLINK(...)`, `@SUM(...)`, `-2+3`), so a delivered value
could run in the spreadsheet of whoever opens an export. The rule (OWASP "CSV Injection"): such a
value gets a leading apostrophe, which spreadsheets show as text and do not print. A number
(`-12.5`, `+3`, `-1,000`) is left as it is: it cannot call anything and must stay a number.

Every export the platform writes for people to open (the quarantine lists beside the delivery
reports, their Markdown tables) goes through formula_safe; Superset's own CSV downloads apply the
same rule (superset.utils.csv.escape_value).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?[0-9][0-9,]*(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def formula_safe(value) -> str | None:
    """The value as text a spreadsheet will show and never evaluate (None stays None)."""
    if value is None:
        return None
    text = str(value)
    if text.startswith(FORMULA_START) and not NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable]) -> int:
    """A CSV for spreadsheets: UTF-8 with a byte-order mark (so Excel reads Chinese), RFC 4180
    quoting, every cell through formula_safe. Written beside and renamed, so a reader never sees
    half a file. Returns the number of data rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    with partial.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([formula_safe(h) for h in header])
        for row in rows:
            writer.writerow([formula_safe(v) for v in row])
            count += 1
    partial.replace(path)
    return count
