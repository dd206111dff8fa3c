"""Division codes of GB/T 2260 with the years each was valid, from python-stdnum's stdnum/cn/loc.dat.

An ID number keeps the division code of its first registration, so a valid number must carry a
code that existed in its holder's birth year (the rule stdnum.cn.ric applies). The pipelines join
this table rather than calling stdnum row by row.
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from typing import NamedTuple

_ERA = re.compile(r"^\[(\d{4})?-(\d{4})?\](.*)$")


class DivisionEra(NamedTuple):
    code: str
    name: str
    first_year: int | None  # None: valid since before the table begins
    last_year: int | None  # None: still valid


@functools.cache
def division_eras() -> tuple[DivisionEra, ...]:
    """Every (code, name, first year, last year) in stdnum's table; a code may have several eras."""
    text = files("stdnum").joinpath("cn/loc.dat").read_text(encoding="utf-8")
    eras: list[DivisionEra] = []
    province = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            province = line.split()[0]
            continue
        suffix, _, value = line.strip().partition(" county=")
        for part in value.strip('"').split(","):
            match = _ERA.match(part)
            if match:
                first, last, name = match.groups()
                eras.append(
                    DivisionEra(
                        province + suffix,
                        name,
                        int(first) if first else None,
                        int(last) if last else None,
                    )
                )
            else:
                eras.append(DivisionEra(province + suffix, part, None, None))
    return tuple(eras)
