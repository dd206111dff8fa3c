"""The standardization rules again, vectorised over pandas Series, for the gates that Great
Expectations runs on pandas (quality/runner.py validates tables of up to a few million rows on
pandas: a suite there costs milliseconds where Spark's jobs cost seconds).

Every function mirrors one Spark expression of pipelines/standardize.py or
pipelines/credit_code.py and shares its constants (alphabets, weights, patterns, the code table
of GB 32100, the division eras of GB/T 2260); tests/unit/test_pandas_rules.py holds each pair to
the same answer on thousands of values, with python-stdnum as the oracle of both. Regular
expressions spell digits [0-9] and blanks [ \\t\\n\\x0b\\f\\r], as Java's regexes mean \\d and \\s.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd

from citylake.divisions import division_eras
from pipelines import standardize as S
from pipelines.credit_code import AUTHORITY_TYPES, USCC_ALPHABET, USCC_PATTERN, USCC_WEIGHTS

_BLANKS = r"[ \t\n\x0b\f\r]+"
_FULLWIDTH = str.maketrans(S.FULLWIDTH + "\u3000", S.HALFWIDTH + " ")
_FULLWIDTH_LOWER = str.maketrans(
    "".join(chr(0xFF41 + i) for i in range(26)), "abcdefghijklmnopqrstuvwxyz"
)
RIC_PATTERN = r"^[0-9]{17}[0-9X]$"


def _text(series: pd.Series) -> pd.Series:
    """Values as Python strings (None for missing), whatever the column's dtype."""
    return (
        series.astype(object)
        .where(series.notna(), None)
        .map(lambda v: v if v is None or isinstance(v, str) else str(v))
    )


def clean_text(series: pd.Series) -> pd.Series:
    """standardize.clean_text: invisible characters removed, full-width → half-width, blanks
    collapsed, trimmed, '' → None."""
    text = (
        _text(series)
        .str.replace(S.INVISIBLE, "", regex=True)
        .str.translate(_FULLWIDTH)
        .str.replace(_BLANKS, " ", regex=True)
    )
    text = text.str.strip(" ")
    return text.where(text.notna() & (text != ""), None)


def clean_id_number(series: pd.Series) -> pd.Series:
    text = clean_text(series).str.replace(r"[ \t\n\x0b\f\r]", "", regex=True).str.upper()
    return text.where(text.notna() & (text != ""), None)


def upgrade_ric15(number: pd.Series) -> pd.Series:
    legacy = number.str.fullmatch(r"[0-9]{15}").fillna(False).astype(bool)
    first17 = number.str[:6] + "19" + number.str[6:15]
    upgraded = first17 + ric_check_characters(first17.where(legacy, "0" * 17))
    return number.where(~legacy, upgraded)


def ric_check_characters(first17: pd.Series) -> pd.Series:
    """The GB 11643 check character of 17-digit strings (other values give a meaningless one)."""
    digits = _digit_matrix(first17.fillna("0" * 17), 17, "0123456789")
    total = digits @ np.array(S.RIC_WEIGHTS)
    return pd.Series(np.array(list(S.RIC_CHECK))[total % 11], index=first17.index)


def _digit_matrix(values: pd.Series, width: int, alphabet: str) -> np.ndarray:
    """Each value's first `width` characters as their indexes in `alphabet` (unknown → 0)."""
    lookup = np.zeros(0x10000, dtype=np.int64)
    for index, character in enumerate(alphabet):
        lookup[ord(character)] = index
    padded = values.astype(str).str.pad(width, side="right", fillchar=alphabet[0]).str[:width]
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32)
    return (
        lookup[np.minimum(codes, 0xFFFF).reshape(-1, width)]
        if len(padded)
        else np.zeros((0, width), dtype=np.int64)
    )


@functools.cache
def _eras() -> pd.DataFrame:
    frame = pd.DataFrame(
        [(e.code, e.first_year or 0, e.last_year or 9999) for e in division_eras()],
        columns=["code", "first", "last"],
    )
    return frame


def ric_reasons(series: pd.Series, column: str, as_of: dt.date) -> pd.Series:
    """standardize.with_ric_checks' reason codes of each value (a list; empty when valid), after
    the same normalisation (blanks, full-width digits, legacy 15 digits)."""
    number = upgrade_ric15(clean_id_number(series))
    present = number.notna()
    well_formed = number.str.fullmatch(RIC_PATTERN).fillna(False).astype(bool)
    check_ok = number.str[17] == ric_check_characters(number.str[:17].where(well_formed))
    birth = pd.to_datetime(number.str[6:14].where(well_formed), format="%Y%m%d", errors="coerce")
    year = birth.dt.year
    bad_birth = well_formed & (birth.isna() | (birth > pd.Timestamp(as_of)) | (year < 1890))
    eras = _eras()
    codes = pd.DataFrame({"code": number.str[:6], "year": year, "row": np.arange(len(number))})
    matched = codes[well_formed.to_numpy() & birth.notna().to_numpy()].merge(eras, on="code")
    in_era = matched[(matched["first"] <= matched["year"]) & (matched["year"] <= matched["last"])]
    era_ok = pd.Series(False, index=number.index)
    era_ok.iloc[in_era["row"].unique()] = True
    bad_era = well_formed & birth.notna() & ~era_ok
    return _collect(
        number.index,
        (~present, f"{column}.missing"),
        (present & ~well_formed, f"{column}.format"),
        (well_formed & ~check_ok.fillna(False), f"{column}.check_character"),
        (bad_birth, f"{column}.birth_date"),
        (bad_era, f"{column}.division_era"),
    )


def clean_credit_code(series: pd.Series) -> pd.Series:
    text = clean_id_number(_text(series).str.translate(_FULLWIDTH_LOWER)).str.replace("-", "")
    return text.where(text.notna() & (text != ""), None)


def uscc_check_characters(first17: pd.Series) -> pd.Series:
    values = _digit_matrix(first17.fillna("0" * 17), 17, USCC_ALPHABET)
    total = values @ np.array(USCC_WEIGHTS)
    return pd.Series(np.array(list(USCC_ALPHABET))[(-total) % 31], index=first17.index)


def uscc_reasons(series: pd.Series, column: str) -> pd.Series:
    """credit_code.with_uscc_checks' reason codes (without the city-division rule)."""
    code = clean_credit_code(series)
    present = code.notna()
    well_formed = code.str.fullmatch(USCC_PATTERN[1:-1]).fillna(False).astype(bool)
    check_ok = code.str[17] == uscc_check_characters(code.str[:17].where(well_formed))
    known = code.str[:2].isin(AUTHORITY_TYPES)
    return _collect(
        code.index,
        (~present, f"{column}.missing"),
        (present & ~well_formed, f"{column}.format"),
        (well_formed & ~check_ok.fillna(False), f"{column}.check_character"),
        (well_formed & ~known, f"{column}.registration_authority"),
    )


def _collect(index: pd.Index, *rules: tuple[pd.Series, str]) -> pd.Series:
    lists: list[list[str]] = [[] for _ in range(len(index))]
    for condition, code in rules:
        for position in np.flatnonzero(np.asarray(condition, dtype=bool)):
            lists[position].append(code)
    return pd.Series(lists, index=index, dtype=object)


# ----------------------------------------------------------------------------- dates


_DATE_FORMS = (
    (r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})", None),
    (r"([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})", None),
    (r"([0-9]{4})([0-9]{2})([0-9]{2})", None),
    (r"([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日", None),
)


def parse_date(series: pd.Series) -> pd.Series:
    """standardize.parse_date: the forms departments send (2023-05-01, 2023/5/1, 20230501,
    2023年5月1日, an Excel serial of five digits) as Timestamps; anything else NaT."""
    text = clean_text(series)
    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for pattern, _ in _DATE_FORMS:
        parts = text.str.extract(f"^{pattern}$")
        found = parts[0].notna() & result.isna()
        if found.any():
            stamped = pd.to_datetime(
                {
                    "year": parts.loc[found, 0].astype(int),
                    "month": parts.loc[found, 1].astype(int),
                    "day": parts.loc[found, 2].astype(int),
                },  # fmt: skip
                errors="coerce",
            )
            result.loc[found] = stamped
    serial = text.str.fullmatch(r"[0-9]{5}").fillna(False).astype(bool) & result.isna()
    if serial.any():
        days = pd.to_timedelta(text[serial].astype(int), unit="D")
        result.loc[serial] = pd.Timestamp("1899-12-30") + days
    return result


def as_timestamp(series: pd.Series) -> pd.Series:
    """A date, a timestamp or a department's date text as a naive Timestamp (unreadable: NaT)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series.dt.tz_localize(None) if series.dt.tz is not None else series
    if series.map(lambda v: isinstance(v, dt.date), na_action="ignore").fillna(False).all():
        return pd.to_datetime(series, errors="coerce")
    parsed = parse_date(series)
    text = clean_text(series)
    loose = pd.to_datetime(text.where(parsed.isna()), errors="coerce", format="ISO8601")
    return parsed.fillna(loose)


def not_in_future(series: pd.Series, as_of: str | None) -> pd.Series:
    limit = pd.Timestamp(as_of) if as_of else pd.Timestamp(dt.date.today())
    value = as_timestamp(series)
    return value.isna() | (value < limit + pd.Timedelta(days=1))
