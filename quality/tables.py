"""What a table is to its suite: its contract or gold metadata, its columns as the suite knows
them and its personal columns (masked in results), resolved once per table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from citylake import catalogue
from citylake.config import ConfigError, SourceContract

BRONZE_LINEAGE = ("_source_file", "_batch_id", "_ingested_at", "_delivery_date", "_row_number")
SILVER_HISTORY = ("valid_from", "valid_to", "is_current")


def _contracts() -> dict[str, SourceContract]:
    from citylake.config import settings

    return settings()[2]


def contract_of(layer: str, table: str, contracts: dict[str, SourceContract]) -> SourceContract:
    if layer == "bronze":
        if table in contracts:
            return contracts[table]
    else:
        for contract in contracts.values():
            if contract.silver_table == table:
                return contract
    raise ConfigError(f"{layer}.{table}: no source contract in conf/sources/ defines this table")


def tables(contracts: dict[str, SourceContract]) -> list[tuple[str, str]]:
    """Every (layer, table) that has a suite: one per bronze, silver and gold table."""
    found = [("bronze", c.source_id) for c in contracts.values()]
    found += [("silver", s) for s in sorted({c.silver_table for c in contracts.values()})]
    found += [("gold", t.name) for t in catalogue.GOLD_TABLES]
    return found


def _derived(contract: SourceContract) -> list[str]:
    """Columns silver adds beside a contract column (what pipelines/standardize.py derives)."""
    extra = []
    for column in contract.columns:
        if column.type == "id_number":
            extra += [f"{column.name}_{s}" for s in ("birth_date", "sex", "division")]
        elif column.type == "credit_code":
            extra += [f"{column.name}_{s}" for s in ("authority", "entity_type", "division")]
    return extra


def table_columns(layer: str, table: str, contracts: dict[str, SourceContract]) -> tuple[str, ...]:
    if layer == "gold":
        return tuple(catalogue.gold_table(table).column_names)
    return _contract_columns(layer, contract_of(layer, table, contracts))


def _contract_columns(layer: str, contract: SourceContract) -> tuple[str, ...]:
    if layer == "bronze":
        return (*contract.column_names, "_malformed_line", *BRONZE_LINEAGE)
    return (*contract.column_names, *_derived(contract), *BRONZE_LINEAGE, *SILVER_HISTORY)


def personal_columns(layer: str, table: str, contracts: dict[str, SourceContract]) -> dict:
    """Column → personal-data kind (citylake.masking): the metadata file's for gold, the
    contract's for bronze and silver, plus what is derived from personal values ("text")."""
    if layer == "gold":
        return _gold_personal(catalogue.gold_table(table))
    return _contract_personal(contract_of(layer, table, contracts))


def _gold_personal(gold: catalogue.GoldTable) -> dict:
    return {c: p.kind for c, p in gold.personal.items()}


def _contract_personal(contract: SourceContract) -> dict:
    personal = {c.name: c.pii for c in contract.columns if c.pii}
    personal |= {f"{c.name}_birth_date": "text" for c in contract.columns if c.type == "id_number"}
    return personal | {"_malformed_line": "text"}


@dataclass(frozen=True)
class TableSpec:
    """One table as its suite sees it, resolved once from (layer, name)."""

    layer: str
    name: str
    columns: tuple[str, ...]  # as the suite knows them
    personal: Mapping[str, str]  # column → personal-data kind (masked in results)
    contract: SourceContract | None  # bronze and silver
    gold: catalogue.GoldTable | None  # gold

    @property
    def key(self) -> list[str]:
        return list(self.gold.key) if self.gold else list(self.contract.business_key)


def table_spec(layer: str, name: str, contracts: dict[str, SourceContract]) -> TableSpec:
    """The table's contract or metadata, columns and personal columns; a ConfigError naming the
    table when nothing defines it."""
    if layer == "gold":
        try:
            gold = catalogue.gold_table(name)
        except KeyError as exc:
            raise ConfigError(f"gold.{name}: {exc.args[0]}") from None
        return TableSpec(layer, name, tuple(gold.column_names), _gold_personal(gold), None, gold)
    contract = contract_of(layer, name, contracts)
    return TableSpec(
        layer,
        name,
        _contract_columns(layer, contract),
        _contract_personal(contract),
        contract,
        None,
    )
