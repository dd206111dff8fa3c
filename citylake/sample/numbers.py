"""Identity numbers, computed vectorised: 公民身份号码 (GB 11643), 统一社会信用代码 (GB 32100).

Also the era table that says which division code an ID number issued in a given birth year
carries, read from python-stdnum's stdnum/cn/loc.dat (the GB/T 2260 history with validity years).
"""

from __future__ import annotations

import functools
import re

import numpy as np
from stdnum import numdb

from citylake.config import City

ID_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
ID_CHECK_CHARACTERS = np.array(list("10X98765432"))  # indexed by Σ(digit × weight) mod 11

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], dtype=np.int64)
ORGANISATION_CODE_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)  # GB 11714

_ERA = re.compile(r"^\[(\d{4})?-(\d{4})?\]")


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width ASCII strings → (n, width) array of their byte values."""
    return np.asarray(values, dtype=f"S{width}").view(np.uint8).reshape(-1, width).astype(np.int64)


def id_check_characters(bodies: np.ndarray) -> np.ndarray:
    """The check character of each 17-digit ID number body (ISO 7064 MOD 11-2)."""
    total = (_digits(bodies, 17) - ord("0")) @ ID_WEIGHTS
    return ID_CHECK_CHARACTERS[total % 11]


def id_numbers(
    division_codes: np.ndarray, birth_dates: np.ndarray, sequences: np.ndarray
) -> np.ndarray:
    """18-character ID numbers from 6-digit codes, datetime64[D] birth dates and 3-digit sequences."""
    if not len(division_codes):  # np.strings.replace fails on an empty array
        return np.empty(0, dtype="U18")
    compact_dates = np.strings.replace(np.datetime_as_string(birth_dates, unit="D"), "-", "")
    bodies = np.strings.add(
        np.strings.add(division_codes.astype("U6"), compact_dates),
        np.strings.zfill(sequences.astype("U3"), 3),
    )
    return np.strings.add(bodies, id_check_characters(bodies))


def _uscc_values(codes: np.ndarray) -> np.ndarray:
    lookup = np.full(128, -1, dtype=np.int64)
    for value, character in enumerate(USCC_ALPHABET):
        lookup[ord(character)] = value
    return lookup[_digits(codes, 17)]


def uscc_check_characters(bodies: np.ndarray) -> np.ndarray:
    """The check character of each 17-character USCC body (weights 3^i mod 31)."""
    total = _uscc_values(bodies) @ USCC_WEIGHTS
    return np.array(list(USCC_ALPHABET))[(31 - total % 31) % 31]


def credit_codes(
    rng: np.random.Generator, authority: str, entity_types: np.ndarray, division_codes: np.ndarray
) -> np.ndarray:
    """Distinct USCCs: authority, type, division, a GB 11714 organisation code, check character."""
    count = len(entity_types)
    organisation_numbers = rng.choice(10**8, size=count, replace=False)
    organisation_bodies = np.strings.zfill(organisation_numbers.astype("U8"), 8)
    remainder = ((_digits(organisation_bodies, 8) - ord("0")) @ ORGANISATION_CODE_WEIGHTS) % 11
    organisation_checks = np.array(list("0X987654321"))[remainder]  # 11 - r, with 10 → X, 11 → 0
    bodies = np.strings.add(
        np.strings.add(
            np.strings.add(authority, entity_types.astype("U1")), division_codes.astype("U6")
        ),
        np.strings.add(organisation_bodies, organisation_checks),
    )
    return np.strings.add(bodies, uscc_check_characters(bodies))


def _years_valid(code: str) -> list[tuple[int, int]]:
    """The (first, last) birth years for which stdnum's table accepts a division code."""
    info = {k: v for _, props in numdb.get("cn/loc").info(code) for k, v in props.items()}
    spans = []
    for county in info.get("county", "").split(","):
        match = _ERA.match(county)
        if not county:
            continue
        if match is None:
            spans.append((0, 9999))
        else:
            spans.append((int(match.group(1) or 0), int(match.group(2) or 9999)))
    return spans


@functools.cache
def _is_valid_in(code: str, year: int) -> bool:
    return any(first <= year <= last for first, last in _years_valid(code))


def era_code_table(city: City, first_year: int, last_year: int) -> np.ndarray:
    """(division index, birth year − first_year) → the division code an ID number born then carries.

    Today's code where it already existed, else the predecessor valid that year. A division with
    no code of its own yet (平桂区 before 2016) was part of the city's first division, the seat
    district it was carved from, and borrows that division's code of the year.
    """

    def code_for(division_index: int, year: int) -> str | None:
        division = city.divisions[division_index]
        return next(
            (c for c in [division.code, *division.predecessors] if _is_valid_in(c, year)), None
        )

    years = range(first_year, last_year + 1)
    table = np.empty((len(city.divisions), len(years)), dtype="U6")
    for index in range(len(city.divisions)):
        for offset, year in enumerate(years):
            code = code_for(index, year) or code_for(0, year)
            if code is None:
                raise ValueError(
                    f"conf/city.yaml: no code of division {city.divisions[index].code} or its "
                    f"predecessors is valid in {year} per stdnum's loc.dat; add the predecessor"
                )
            table[index, offset] = code
    return table
