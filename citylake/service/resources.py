"""The sharing catalogue (政务信息资源目录) and who may read what of it.

Every gold table is a resource; its metadata file (base_libraries/*.yml, citylake.catalogue)
gives its fields with their sharing, open and grade classes and reasons. Derived here:
the owning department (that of the first source it reads, through gold tables it reads), the
update frequency (its most frequent source's) and the resource's own class (无条件共享 when
every field is; 不予共享 when none may be shared; else 有条件共享).

Access by field, as the national rules put it:
* 无条件共享 fields: any registered consumer with the query service;
* 有条件共享 fields: only under an approved, unexpired application naming them (a grant), on
  the rows it names (e.g. division_code in one county); personal fields masked unless the grant
  names them in clear;
* 不予共享 fields: never, whoever asks.
A resource whose key is not readable by the consumer is not readable row by row at all (rows
without their key would identify no one, and a lookup by key would confirm who is registered).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from citylake.catalogue import (
    GOLD_TABLES,
    LIBRARY_TITLES,
    STORED_MASK,
    CatalogueColumn,
    GoldTable,
    gold_table,
    masked_sql,
)
from citylake.classification import SHARING_ORDER
from citylake.config import Consumer, Frequency, SourceContract
from citylake.service_state import Application

UNCONDITIONAL, CONDITIONAL, NEVER = SHARING_ORDER
FREQUENCY_ORDER = (Frequency.DAILY, Frequency.WEEKLY, Frequency.MONTHLY)
# The catalogue's types, as a data officer reads them (and Delta Sharing's schema names them).
SPARK_TYPES = {
    "VARCHAR": "string",
    "INTEGER": "integer",
    "BIGINT": "long",
    "DOUBLE": "double",
    "DECIMAL(18,4)": "decimal(18,4)",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
}


class Denied(Exception):
    """A request the rules refuse; `code` is what the access log and the answer say."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Resource:
    table: GoldTable
    owner: Consumer
    frequency: Frequency
    sources: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def sharing(self) -> str:
        levels = {c.classes.sharing.level for c in self.table.columns}
        if levels == {UNCONDITIONAL}:
            return UNCONDITIONAL
        if levels == {NEVER}:
            return NEVER
        return CONDITIONAL

    def fields(self, level: str) -> list[str]:
        return [c.name for c in self.table.columns if c.classes.sharing.level == level]

    def field(self, name: str) -> CatalogueColumn:
        for column in self.table.columns:
            if column.name == name:
                return column
        raise Denied(422, "unknown_field", f"{self.name} 没有字段 {name} (no field '{name}')")

    def as_json(self) -> dict:
        table = self.table
        return {
            "name": self.name,
            "title": {"zh": table.meta.description.zh, "en": table.meta.description.en},
            "library": table.library,
            "library_title": LIBRARY_TITLES[table.library],
            "owner": {
                "code": self.owner.code,
                "name": self.owner.name,
                "name_en": self.owner.name_en,
            },
            "update_frequency": self.frequency.value,
            "update_frequency_label": self.frequency.label,
            "grain": table.grain,
            "key": list(table.key),
            "sharing": self.sharing,
            "sources": list(self.sources),
            "fields": [
                {
                    "name": c.name,
                    "type": c.type,
                    "zh": c.zh,
                    "en": c.en,
                    "personal": c.personal.kind if c.personal else None,
                    "sharing": c.classes.sharing.level,
                    "sharing_reason": c.classes.sharing.reason,
                    "open": c.classes.open.level,
                    "open_reason": c.classes.open.reason,
                    "grade": c.classes.grade.level,
                    "grade_reason": c.classes.grade.reason,
                }
                for c in table.columns
            ],
        }


def _all_sources(table: GoldTable) -> tuple[str, ...]:
    found = list(table.sources)
    for name in table.gold:
        found += [s for s in _all_sources(gold_table(name)) if s not in found]
    return tuple(found)


def _owner(table: GoldTable, contracts: dict[str, SourceContract]) -> str:
    """The department of the first source it reads (through the gold tables it reads), or the
    keeper its metadata names for reference data."""
    if table.sources:
        return contracts[table.sources[0]].department
    if table.gold:
        return _owner(gold_table(table.gold[0]), contracts)
    return table.meta.owner


def _frequency(table: GoldTable, contracts: dict[str, SourceContract]) -> Frequency:
    """Its most frequent input's: a table is as fresh as the freshest delivery it reads."""
    found = [contracts[s].frequency for s in table.sources]
    found += [_frequency(gold_table(g), contracts) for g in table.gold]
    if table.meta.update_frequency:
        found.append(table.meta.update_frequency)
    return min(found, key=FREQUENCY_ORDER.index)


def resources(
    contracts: dict[str, SourceContract], consumers: dict[str, Consumer]
) -> dict[str, Resource]:
    return {
        table.name: Resource(
            table,
            consumers[_owner(table, contracts)],
            _frequency(table, contracts),
            _all_sources(table),
        )
        for table in GOLD_TABLES
    }


# ----------------------------------------------------------------------------- one request


@dataclass(frozen=True)
class Access:
    """What one request may read of a resource: the fields returned, those in clear, the rows
    (column → allowed values) and the grant it reads under (None: unconditional fields only)."""

    resource: Resource
    fields: tuple[str, ...]
    clear: frozenset[str]
    rows: dict[str, list[str]]
    grant: Application | None
    readable: frozenset[str] = frozenset()  # what it may read (and filter on), asked for or not

    def select_list(self, stored_masks: bool = True) -> str:
        """The fields, personal ones masked unless in clear: from the masks the clear file
        stores (stored_masks) or, on any other relation (a Delta version), by the rule itself."""
        items = []
        for name in self.fields:
            column = self.resource.field(name)
            if column.personal is None or name in self.clear:
                items.append(f'"{name}"')
            elif stored_masks:
                items.append(f'"{name}{STORED_MASK}" AS "{name}"')
            else:
                items.append(f'{masked_sql(column.personal, name)} AS "{name}"')
        return ", ".join(items)

    def masked(self) -> list[str]:
        return [
            f
            for f in self.fields
            if self.resource.field(f).personal is not None and f not in self.clear
        ]

    def row_condition(self) -> tuple[str, list]:
        """SQL (identifiers from the catalogue only) and bound values for the grant's rows."""
        clauses, values = [], []
        for column, allowed in sorted(self.rows.items()):
            marks = ", ".join("?" for _ in allowed)
            clauses.append(f'CAST("{column}" AS VARCHAR) IN ({marks})')
            values += [str(v) for v in allowed]
        return " AND ".join(clauses) or "true", values


def access(
    resource: Resource,
    consumer: Consumer,
    grants: list[Application],
    grant_id: str | None,
    requested: list[str] | None,
    service: str = "query",
) -> Access:
    """What `consumer` may read of `resource` in this request, or Denied with the reason."""
    if service not in consumer.services:
        raise Denied(
            403,
            "service_not_granted",
            f"{consumer.name} 未开通 {service} 服务 (service '{service}' not enabled)",
        )
    grant = None
    if grant_id is not None:
        grant = next((g for g in grants if g.id == grant_id), None)
        if grant is None:
            raise Denied(
                403,
                "grant_not_valid",
                f"授权 {grant_id} 不属于 {consumer.name}、不是此资源的或已过期 "
                "(the grant is not this consumer's, not for this resource, or expired)",
            )
    elif len(grants) == 1:
        grant = grants[0]
    elif len(grants) > 1:
        raise Denied(
            409,
            "grant_ambiguous",
            f"{consumer.name} 对 {resource.name} 有 {len(grants)} 项有效授权，请用 grant "
            "参数指明本次依据 (several grants: name one with ?grant=)",
        )
    readable = resource.fields(UNCONDITIONAL) + (list(grant.fields) if grant else [])
    # By default a grant reads what it names (projected per grant); without one, every
    # unconditional field. Either may ask for fewer, or under a grant for unconditional ones too.
    default = set(grant.fields) if grant else set(readable)
    columns = [c.name for c in resource.table.columns]
    wanted = list(requested) if requested else [c for c in columns if c in default]
    levels = {name: resource.field(name).classes.sharing.level for name in wanted}
    if never := [name for name in wanted if levels[name] == NEVER]:
        reason = resource.field(never[0]).classes.sharing.reason
        raise Denied(
            403, "not_shareable",
            f"{resource.name}.{', '.join(never)} 为不予共享 (never shared: {reason})",
        )  # fmt: skip
    if outside := [name for name in wanted if name not in readable]:
        raise Denied(
            403, "grant_required",
            f"{resource.name}.{', '.join(outside)} 为有条件共享，须经申请批准 "
            "(conditionally shared: apply for a grant naming it)",
        )  # fmt: skip
    if not set(resource.table.key) <= set(readable):
        raise Denied(
            403,
            "grant_required",
            f"{resource.name} 的主键 {', '.join(resource.table.key)} 为有条件共享，"
            "须经申请批准方可按行读取 (its key is conditionally shared: apply first)",
        )
    clear = frozenset(grant.clear_fields) if grant else frozenset()
    return Access(
        resource, tuple(wanted), clear, dict(grant.rows) if grant else {}, grant,
        frozenset(readable),
    )  # fmt: skip


def check_application(
    resource: Resource,
    fields: list[str],
    clear_fields: list[str],
    rows: dict[str, list[str]],
    valid_from: dt.date,
    valid_until: dt.date,
    longest_days: int = 366,
) -> None:
    """An application asks only for what a grant can give: known fields, none 不予共享, clear
    fields among its personal fields, rows on its own columns, a bounded period."""
    if not fields:
        raise Denied(422, "no_fields", "申请须列明字段 (name the fields)")
    for name in [*fields, *clear_fields, *rows]:
        resource.field(name)
    never = [f for f in fields if resource.field(f).classes.sharing.level == NEVER]
    if never:
        raise Denied(
            403,
            "not_shareable",
            f"{resource.name} 的 {', '.join(never)} 为不予共享，不可申请 (never shared)",
        )
    if stray := [f for f in clear_fields if f not in fields]:
        raise Denied(422, "clear_outside_fields", f"明文字段须在申请字段内: {stray}")
    if not_personal := [f for f in clear_fields if resource.field(f).personal is None]:
        raise Denied(422, "clear_not_personal", f"非个人信息字段无须明文申请: {not_personal}")
    if any(not values for values in rows.values()):
        raise Denied(422, "empty_rows", "行范围须列出取值 (a row restriction lists its values)")
    if valid_until < valid_from:
        raise Denied(422, "bad_period", "有效期止早于起 (valid_until before valid_from)")
    if (valid_until - valid_from).days >= longest_days:
        raise Denied(422, "bad_period", f"有效期不超过 {longest_days} 天 (at most a year)")
