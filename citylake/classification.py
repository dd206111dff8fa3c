"""How a column may travel: its personal-data kind, sharing class, open class and data grade.

The three classes are the national ones: sharing (政务数据共享: 无条件共享 / 有条件共享 /
不予共享), opening to the public (公共数据开放: 无条件开放 / 有条件开放 / 不予开放) and the data
grade of GB/T 43697-2024 (一般 / 重要 / 核心). Each is given with the reason a city data officer
would accept. A table states them once as defaults; a column states only where it differs.
Source contracts (silver) and the gold metadata files (base_libraries/*.yml) share these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PersonalKind = Literal["id_number", "name", "phone", "address"]
SharingClass = Literal["无条件共享", "有条件共享", "不予共享"]
OpenClass = Literal["无条件开放", "有条件开放", "不予开放"]
Grade = Literal["一般", "重要", "核心"]
# How strict each class is, loosest first: a column is never looser than the law lets its kind be.
SHARING_ORDER: tuple[SharingClass, ...] = ("无条件共享", "有条件共享", "不予共享")
OPEN_ORDER: tuple[OpenClass, ...] = ("无条件开放", "有条件开放", "不予开放")
GRADE_ORDER: tuple[Grade, ...] = ("一般", "重要", "核心")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Sharing(StrictModel):
    level: SharingClass = Field(alias="class")
    reason: str = Field(min_length=4)


class Opening(StrictModel):
    level: OpenClass = Field(alias="class")
    reason: str = Field(min_length=4)


class Grading(StrictModel):
    level: Grade = Field(alias="class")
    reason: str = Field(min_length=4)


class Classes(StrictModel):
    """A table's defaults: all three, each with its reason."""

    sharing: Sharing
    open: Opening
    grade: Grading


class ColumnClasses(StrictModel):
    """A column's own classes, where they differ from its table's."""

    sharing: Sharing | None = None
    open: Opening | None = None
    grade: Grading | None = None

    def over(self, table: Classes) -> Classes:
        return Classes(
            sharing=self.sharing or table.sharing,
            open=self.open or table.open,
            grade=self.grade or table.grade,
        )


class PersonRows(StrictModel):
    """Which rows are natural persons, for a column that names persons and entities alike
    (credit subjects, licence holders): rows where `column` is not `entity_value` (法人), or,
    without one, rows where `column` is null (a parcel holder without a credit code)."""

    column: str
    entity_value: str | None = None

    @property
    def sql(self) -> str:
        if self.entity_value is None:
            return f'"{self.column}" IS NULL'
        literal = "'" + self.entity_value.replace("'", "''") + "'"
        return f'"{self.column}" IS DISTINCT FROM {literal}'


class Personal(StrictModel):
    """A column holding personal information (个人信息), on every row or on persons' rows only."""

    kind: PersonalKind
    persons_only: PersonRows | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {"kind": value} if isinstance(value, str) else value
