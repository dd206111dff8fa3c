"""The one loader of table metadata: every gold table's file beside its build
(base_libraries/<library>__<entity>.yml), checked against the source contracts.

A metadata file says what a table is (description, grain, key), what it reads (silver and gold
tables) and, per column, its type, its description in Chinese and English, its personal-data kind
and its sharing, open and grade classes with their reasons (citylake.classification). Everything
that needs these facts derives them from here: the build of each table (base_libraries.<library>
:build_<entity>), the sources feeding it, the serving types and masks, the personal columns of
the quality reports, the key tests of the gold suites, the Superset column descriptions.

Loaded once per process at import (DAG files import it at parse time: twelve small YAML files).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from citylake import masking
from citylake.classification import (
    GRADE_ORDER,
    OPEN_ORDER,
    SHARING_ORDER,
    Classes,
    ColumnClasses,
    Personal,
)
from citylake.classification import StrictModel as _Model
from citylake.config import (
    REPO_ROOT,
    ConfigError,
    Frequency,
    SourceContract,
    _read_yaml,
    _validate,
)

METADATA_DIR = REPO_ROOT / "base_libraries"
LINEAGE = ("_source_file", "_batch_id", "_ingested_at")
LIBRARIES = ("population", "legal_entity", "spatial", "credit", "licence", "service")
LIBRARY_TITLES = {
    "population": "人口库 Population",
    "legal_entity": "法人库 Legal entities",
    "spatial": "空间地理库 Spatial",
    "credit": "信用库 Credit",
    "licence": "电子证照库 Licences",
    "service": "政务服务 Services",
}
# Gold column types, as DuckDB names them (the serving file's types).
GoldType = Literal[
    "VARCHAR", "INTEGER", "BIGINT", "DOUBLE", "DECIMAL(18,4)", "BOOLEAN", "DATE", "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE",
]  # fmt: skip
LINEAGE_TYPES = {
    "_source_file": "VARCHAR",
    "_batch_id": "VARCHAR",
    "_ingested_at": "TIMESTAMP WITH TIME ZONE",
}
LINEAGE_DESCRIPTIONS = {
    "_source_file": "来源文件（落地区相对路径）The delivered file this row came from",
    "_batch_id": "批次编号 The delivery batch (source, date and content)",
    "_ingested_at": "入湖时间 When the row was ingested into bronze",
}


class Description(_Model):
    zh: str = Field(min_length=2)
    en: str = Field(min_length=2)


class ColumnMeta(ColumnClasses):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: GoldType
    zh: str = Field(min_length=2)
    en: str = Field(min_length=2)
    personal: Personal | None = None


class Reads(_Model):
    silver: list[str] = []
    gold: list[str] = []


class TableMeta(_Model):
    name: str = Field(pattern=r"^[a-z_]+__[a-z_]+$")
    description: Description
    grain: str = Field(pattern=r"^one row per ")
    key: list[str] = Field(min_length=1)
    reads: Reads = Reads()
    # For a table that reads no delivered source (reference data from conf/): the department
    # that keeps it and how often it may change. Otherwise both follow from its sources.
    owner: str | None = Field(default=None, pattern=r"^[a-z]+$")
    update_frequency: Frequency | None = None
    classes: Classes
    columns: list[ColumnMeta] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> TableMeta:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("columns: a column name appears twice")
        if clash := set(names) & set(LINEAGE):
            raise ValueError(f"columns: {sorted(clash)} are lineage columns, added to every table")
        if missing := [k for k in self.key if k not in names]:
            raise ValueError(f"key: {missing} are not among the columns")
        reads_nothing = not self.reads.silver and not self.reads.gold
        if reads_nothing and (self.owner is None or self.update_frequency is None):
            raise ValueError("owner, update_frequency: a table that reads no source states both")
        if not reads_nothing and (self.owner or self.update_frequency):
            raise ValueError("owner, update_frequency: follow from the sources it reads")
        library = self.name.split("__", 1)[0]
        if library not in LIBRARIES:
            raise ValueError(f"name: '{library}' is not a base library ({', '.join(LIBRARIES)})")
        for column in self.columns:
            rows = column.personal and column.personal.persons_only
            if rows and rows.column not in names:
                raise ValueError(
                    f"columns.{column.name}.personal.persons_only: no column '{rows.column}'"
                )
            if column.personal:
                classes = column.over(self.classes)
                # PIPL: personal data is never shared with everyone nor opened to the public.
                if classes.sharing.level == SHARING_ORDER[0]:
                    raise ValueError(
                        f"columns.{column.name}: personal data ({column.personal.kind}) cannot be "
                        f"{SHARING_ORDER[0]}; give it its own sharing class with the reason"
                    )
                if classes.open.level != OPEN_ORDER[-1]:
                    raise ValueError(
                        f"columns.{column.name}: personal data ({column.personal.kind}) is "
                        f"{OPEN_ORDER[-1]}, not {classes.open.level}"
                    )
        return self


@dataclass(frozen=True)
class CatalogueColumn:
    """A column with its classes resolved (its own, else its table's)."""

    name: str
    type: str
    zh: str
    en: str
    personal: Personal | None
    classes: Classes

    @property
    def description(self) -> str:
        return f"{self.zh} {self.en}"


@dataclass(frozen=True)
class GoldTable:
    meta: TableMeta
    path: Path
    sources: tuple[str, ...]  # conf/sources ids whose deliveries feed the silver tables it reads

    @property
    def name(self) -> str:  # <library>__<entity>, the table gold.<name>
        return self.meta.name

    @property
    def library(self) -> str:
        return self.name.split("__", 1)[0]

    @property
    def entity(self) -> str:
        return self.name.split("__", 1)[1]

    @property
    def grain(self) -> str:
        return self.meta.grain

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.meta.key)

    @property
    def silver(self) -> tuple[str, ...]:  # silver tables the build reads, in its order
        return tuple(self.meta.reads.silver)

    @property
    def gold(self) -> tuple[str, ...]:  # gold tables the build also reads (built before it)
        return tuple(self.meta.reads.gold)

    @property
    def builder(self) -> str:
        """The function that builds it, "module:function": one naming rule for every table."""
        return f"base_libraries.{self.library}:build_{self.entity}"

    @functools.cached_property
    def columns(self) -> tuple[CatalogueColumn, ...]:
        """Its own columns (lineage excluded), classes resolved."""
        return tuple(
            CatalogueColumn(c.name, c.type, c.zh, c.en, c.personal, c.over(self.meta.classes))
            for c in self.meta.columns
        )

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns] + list(LINEAGE)

    @property
    def column_types(self) -> dict[str, str]:
        """Every column with its serving type, lineage included."""
        return {c.name: c.type for c in self.columns} | LINEAGE_TYPES

    @property
    def personal(self) -> dict[str, Personal]:
        return {c.name: c.personal for c in self.columns if c.personal}

    def column(self, name: str) -> CatalogueColumn:
        return next(c for c in self.columns if c.name == name)

    @property
    def asset_uri(self) -> str:
        return f"citylake://gold/{self.name}"

    @property
    def sharing(self) -> str:
        """The table's sharing class: its strictest column's (a consumer sees the whole row)."""
        return max((c.classes.sharing.level for c in self.columns), key=SHARING_ORDER.index)

    @property
    def grade(self) -> str:
        return max((c.classes.grade.level for c in self.columns), key=GRADE_ORDER.index)


def masked_sql(personal: Personal, column: str) -> str:
    """The DuckDB expression that masks a personal column: its kind's rule (citylake.masking),
    on natural persons' rows only where the metadata says so (entities stay in clear)."""
    quoted = f'"{column}"'
    expression = masking.sql(personal.kind, quoted)
    if personal.persons_only:
        return f"CASE WHEN {personal.persons_only.sql} THEN {expression} ELSE {quoted} END"
    return expression


# The clear copy (the data service's) carries each personal column masked beside it, computed
# once at publication by masked_sql: a request picks a column instead of evaluating the rule.
STORED_MASK = "__masked"


def clear_select(table: GoldTable) -> str:
    """The SELECT list that copies a gold table into the clear file: every column as it is, and
    each personal column's mask as <column>__masked."""
    items = [f'"{c}"' for c in table.column_names]
    items += [
        f'{masked_sql(c.personal, c.name)} AS "{c.name}{STORED_MASK}"'
        for c in table.columns
        if c.personal is not None
    ]
    return ", ".join(items)


@dataclass(frozen=True)
class Served:
    """One column of a gold table as the serving file names it: a column as it is ("clear"), a
    personal column only as <column>_masked ("masked"), an ID number also as <column>_key, its
    keyed hash ("key"). The one spelling of the serving names, for its SQL and its datasets."""

    name: str
    column: CatalogueColumn
    form: Literal["clear", "masked", "key"]


def served(table: GoldTable) -> list[Served]:
    """The serving file's columns of a gold table (lineage excluded), in the table's order."""
    found = []
    for column in table.columns:
        if column.personal is None:
            found.append(Served(column.name, column, "clear"))
            continue
        found.append(Served(f"{column.name}_masked", column, "masked"))
        if column.personal.kind in masking.KEYED:
            found.append(Served(f"{column.name}_key", column, "key"))
    return found


def serving_columns(table: GoldTable) -> dict[str, tuple[str, str]]:
    """Column → (type, description) as the serving file names its columns (catalogue.served),
    lineage as it is: what the Superset datasets show analysts."""
    found = {c: (LINEAGE_TYPES[c], d) for c, d in LINEAGE_DESCRIPTIONS.items()}
    for item in served(table):
        column = item.column
        classes = column.classes
        tag = f"［{classes.sharing.level} · {classes.open.level} · {classes.grade.level}］"
        if item.form == "clear":
            found[item.name] = (column.type, f"{column.description} {tag}")
        elif item.form == "masked":
            found[item.name] = ("VARCHAR", f"{column.description}（脱敏 masked） {tag}")
        else:
            found[item.name] = (
                "VARCHAR",
                f"{column.zh}的加密散列，可关联与计数、不可还原 "
                f"Keyed hash of the {column.en[0].lower()}{column.en[1:]}: joins and counts, "
                "never the value",
            )
    return found


def serving_descriptions(table: GoldTable) -> dict[str, str]:
    return {name: description for name, (_, description) in serving_columns(table).items()}


def load_gold_table(path: Path, contracts: dict[str, SourceContract]) -> GoldTable:
    meta = _validate(TableMeta, path, _read_yaml(path))
    if meta.name != path.stem:
        raise ConfigError(
            f"{path}: key 'name' is '{meta.name}', the file name says '{path.stem}'; "
            "one name travels the whole path, so they must agree"
        )
    feeders = {c.silver_table: c.source_id for c in contracts.values()}
    if unknown := [s for s in meta.reads.silver if s not in feeders]:
        raise ConfigError(
            f"{path}: key 'reads.silver': {unknown} are fed by no contract in conf/sources "
            f"(silver tables: {', '.join(sorted(feeders))})"
        )
    return GoldTable(meta, path, tuple(feeders[s] for s in meta.reads.silver))


def load_gold_tables(
    folder: Path = METADATA_DIR, contracts: dict[str, SourceContract] | None = None
) -> tuple[GoldTable, ...]:
    """Every gold table, in an order that builds each after the gold tables it reads."""
    if contracts is None:
        from citylake.config import load_contracts

        contracts = load_contracts()
    tables = {t.name: t for t in (load_gold_table(p, contracts) for p in folder.glob("*.yml"))}
    for table in tables.values():
        if unknown := [g for g in table.gold if g not in tables]:
            raise ConfigError(f"{table.path}: key 'reads.gold': no metadata file for {unknown}")
    ordered: list[GoldTable] = []
    waiting = sorted(tables.values(), key=lambda t: (LIBRARIES.index(t.library), t.name))
    while waiting:
        done = {t.name for t in ordered}
        ready = next((t for t in waiting if set(t.gold) <= done), None)
        if ready is None:
            raise ConfigError(
                f"{folder}: the gold tables {[t.name for t in waiting]} read each other in a circle"
            )
        ordered.append(ready)
        waiting.remove(ready)
    return tuple(ordered)


GOLD_TABLES: tuple[GoldTable, ...] = load_gold_tables()


def gold_tables(library: str | None = None) -> list[GoldTable]:
    return [t for t in GOLD_TABLES if library is None or t.library == library]


def gold_table(name: str) -> GoldTable:
    for table in GOLD_TABLES:
        if table.name == name:
            return table
    raise KeyError(f"no gold table '{name}' (no base_libraries/{name}.yml)")


def library_sources(library: str) -> list[str]:
    """Source ids feeding a library's gold tables, in a stable order."""
    return sorted({s for t in gold_tables(library) for s in t.sources})


def build_order() -> list[GoldTable]:
    """Gold tables so that each comes after the gold tables it reads."""
    return list(GOLD_TABLES)


def with_inputs(names: list[str]) -> list[GoldTable]:
    """The named gold tables and every gold table they read, transitively, in build order."""
    wanted = {gold_table(n).name for n in names}
    for table in reversed(GOLD_TABLES):
        if table.name in wanted:
            wanted |= set(table.gold)
    return [t for t in GOLD_TABLES if t.name in wanted]
