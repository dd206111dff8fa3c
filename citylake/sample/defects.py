"""Defects planted in the extracts, each recorded so tests and pipelines can be checked against them.

A defect kind applies to a source when the contract has a column it can spoil (by column type),
so a new contract gets its defects without code. One defect per defective row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from citylake.config import City, SourceContract
from citylake.sample import numbers

WRONG_CHECK_CHARACTER = "wrong_check_character"
IMPOSSIBLE_BIRTH_DATE = "impossible_birth_date"
UNKNOWN_DIVISION_CODE = "unknown_division_code"
MISSING_KEY = "missing_key"
DUPLICATE_KEY = "duplicate_key"
MALFORMED_DATE = "malformed_date"
FULLWIDTH_DIGITS = "fullwidth_digits"

# Kind → the column types it can spoil (None: it spoils the business key).
TARGET_TYPES: dict[str, tuple[str, ...] | None] = {
    WRONG_CHECK_CHARACTER: ("id_number", "credit_code"),
    IMPOSSIBLE_BIRTH_DATE: ("id_number",),
    UNKNOWN_DIVISION_CODE: ("division_code",),
    MISSING_KEY: None,
    DUPLICATE_KEY: None,
    MALFORMED_DATE: ("date", "timestamp"),
    FULLWIDTH_DIGITS: ("id_number", "credit_code", "phone"),
}
DEFECT_KINDS = tuple(TARGET_TYPES)

FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
# Month-day pairs no calendar has.
IMPOSSIBLE_MONTH_DAYS = ("0230", "1301", "0015", "0431", "0632", "0001")
# Dates no rule can read for certain: day-first (is 05/03 May or March?), dotted, or missing the
# day. The forms departments legitimately use (2023/5/1, 20230501, 2023年5月1日, Excel serials)
# are parsed by the pipeline, so they are not defects.
DATE_FORMS = (
    "{d:02d}/{m:02d}/{y}",
    "{y}.{m}.{d}",
    "{y}-{m:02d}",
    "{y}年{m}月",
)
TIMESTAMP_FORMS = (
    "{d:02d}/{m:02d}/{y} {H}:{M:02d}",
    "{y}.{m}.{d} {H}:{M:02d}",
    "{y}-{m:02d} {H}:{M:02d}",
)


@dataclass(frozen=True)
class Defect:
    row: int  # 0-based within the chunk
    column: str
    kind: str


def applicable_kinds(contract: SourceContract) -> list[str]:
    types = {column.type for column in contract.columns}
    return [
        kind for kind, targets in TARGET_TYPES.items() if targets is None or types & set(targets)
    ]


class DefectPlanter:
    """Spoils a share of each chunk's rows, one defect per row, and says which and where."""

    def __init__(self, contract: SourceContract, city: City, rate: float):
        self.contract, self.rate = contract, rate
        self.kinds = applicable_kinds(contract)
        self.key_columns = contract.business_key
        known = set(city.code_to_current)
        self.unknown_codes = [
            c for c in (f"{city.code[:4]}{n}" for n in range(90, 100)) if c not in known
        ]

    def plant(self, chunk: dict[str, np.ndarray], rng: np.random.Generator) -> list[Defect]:
        row_count = len(chunk[self.key_columns[0]])
        count = min(int(row_count * self.rate + rng.random()), row_count)  # unbiased rounding
        rows = np.sort(rng.choice(row_count, size=count, replace=False))
        spoiled = set(rows.tolist())
        defects = []
        for row in rows.tolist():
            kind = self.kinds[rng.integers(len(self.kinds))]
            column = self._spoil(chunk, row, kind, rng, spoiled)
            if column is None:  # nothing of that kind in this row (e.g. no ID number): drop the key
                kind, column = MISSING_KEY, self._spoil(chunk, row, MISSING_KEY, rng, spoiled)
            defects.append(Defect(row, column, kind))
        return defects

    def _target_column(self, chunk: dict[str, np.ndarray], row: int, kind: str) -> str | None:
        types = TARGET_TYPES[kind]
        return next(
            (
                c.name
                for c in self.contract.columns
                if c.type in types and chunk[c.name][row] is not None
            ),
            None,
        )

    def _spoil(
        self,
        chunk: dict[str, np.ndarray],
        row: int,
        kind: str,
        rng: np.random.Generator,
        spoiled: set[int],
    ) -> str | None:
        if kind == MISSING_KEY:
            for key in self.key_columns:
                chunk[key][row] = None
            return self.key_columns[0]
        if kind == DUPLICATE_KEY:
            earlier = (
                [r for r in rng.integers(row, size=8).tolist() if r not in spoiled] if row else []
            )
            if not earlier:
                return None
            for key in self.key_columns:
                chunk[key][row] = chunk[key][earlier[0]]
            return self.key_columns[0]
        column = self._target_column(chunk, row, kind)
        if column is None:
            return None
        value = chunk[column][row]
        column_type = self.contract.column(column).type
        chunk[column][row] = self._spoiled_value(kind, value, column_type, rng)
        return column

    def _spoiled_value(
        self, kind: str, value: str, column_type: str, rng: np.random.Generator
    ) -> str:
        if kind == WRONG_CHECK_CHARACTER:
            alphabet = "0123456789X" if column_type == "id_number" else numbers.USCC_ALPHABET
            wrong = [c for c in alphabet if c != value[-1]]
            return value[:-1] + wrong[rng.integers(len(wrong))]
        if kind == IMPOSSIBLE_BIRTH_DATE:
            month_day = IMPOSSIBLE_MONTH_DAYS[rng.integers(len(IMPOSSIBLE_MONTH_DAYS))]
            body = value[:10] + month_day + value[14:17]
            return body + str(numbers.id_check_characters(np.array([body]))[0])
        if kind == UNKNOWN_DIVISION_CODE:
            return self.unknown_codes[rng.integers(len(self.unknown_codes))]
        if kind == MALFORMED_DATE:
            if column_type == "date":
                day = dt.date.fromisoformat(value)
                form = DATE_FORMS[rng.integers(len(DATE_FORMS))]
                return form.format(y=day.year, m=day.month, d=day.day)
            moment = dt.datetime.fromisoformat(value)
            form = TIMESTAMP_FORMS[rng.integers(len(TIMESTAMP_FORMS))]
            return form.format(
                y=moment.year, m=moment.month, d=moment.day, H=moment.hour, M=moment.minute
            )
        if kind == FULLWIDTH_DIGITS:
            return value.translate(FULLWIDTH)
        raise ValueError(f"unknown defect kind '{kind}'; known: {', '.join(DEFECT_KINDS)}")
