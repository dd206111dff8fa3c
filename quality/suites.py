"""Loading a table's suite: the generated expectations, then its file's
(quality/suites/<layer>/<table>.yaml), built into Great Expectations objects with every error a
ConfigError naming the file and the expectation."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from citylake.config import City, ConfigError, SourceContract
from quality.generated import generated_rules
from quality.tables import _contracts, table_spec, tables

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


SUITES_DIR = Path(str(files("quality").joinpath("suites")))


LAYERS = ("bronze", "silver", "gold")


class ExpectationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    severity: Literal["hard", "soft"]
    kwargs: dict[str, Any] = {}
    when: dict[str, Any] | None = Field(
        default=None, description="{column: value or [values]}: the rows it applies to"
    )
    notes: str | None = None


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    layer: Literal["bronze", "silver", "gold"]
    description: str | None = None
    expectations: list[ExpectationSpec] = []


@dataclass(frozen=True)
class Suite:
    spec: SuiteSpec  # the whole suite: generated expectations first, then the file's
    path: Path | None  # the YAML file, if the table has one
    expectations: list  # great_expectations Expectation objects, in spec order
    columns: tuple[str, ...]  # the table's columns as the suite knows them
    personal: Mapping[str, str]  # column → personal-data kind: its values are masked in results

    @property
    def name(self) -> str:
        return f"{self.spec.layer}.{self.spec.table}"

    @property
    def origin(self) -> str:
        return str(self.path) if self.path else "generated"


def suite_path(table: str, layer: str = "gold") -> Path:
    return SUITES_DIR / layer / f"{table}.yaml"


def _resolve(value, city: City, as_of: dt.date | None, where: str):
    """`$city.<attribute>` → conf/city.yaml's value; `$as_of` → the run's logical date."""
    if not (isinstance(value, str) and value.startswith("$")):
        return value
    if value == "$as_of":
        return as_of.isoformat() if as_of else None
    derived = {"division_count": len(city.divisions)}
    name = value.removeprefix("$city.")
    if value.startswith("$city.") and (name in derived or hasattr(city, name)):
        found = derived.get(name, getattr(city, name, None))
        return list(found) if isinstance(found, list | tuple) else found
    raise ConfigError(f"{where}: unknown placeholder '{value}' ($city.<attribute> or $as_of)")


def _row_condition(when: dict[str, Any], where: str):
    from great_expectations.expectations.row_conditions import Column

    condition = None
    for column, value in when.items():
        part = Column(column).is_in(value) if isinstance(value, list) else Column(column) == value
        condition = part if condition is None else condition & part
    if condition is None:
        raise ConfigError(f"{where}: 'when' names no column")
    return condition


def _columns_named(item: ExpectationSpec) -> list[str]:
    kwargs = item.kwargs
    named = [
        kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(kwargs.get(k), str)
    ]
    named += [c for c in kwargs.get("column_list") or [] if isinstance(c, str)]
    return named + list(item.when or {})


def build_expectations(
    spec: SuiteSpec,
    where: str,
    columns: tuple[str, ...],
    city: City,
    as_of: dt.date | None,
) -> list:
    """GX expectation objects for a spec; every problem is a ConfigError naming `where`."""
    from great_expectations.compatibility.pydantic import ValidationError as GxValidationError
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    import quality.expectations  # noqa: F401  (registers the custom expectations)

    built = []
    for index, item in enumerate(spec.expectations):
        at = f"{where}: expectations[{index}] ({item.type})"
        try:
            cls = get_expectation_impl(item.type)
        except ExpectationNotFoundError:
            raise ConfigError(
                f"{where}: expectations[{index}]: unknown expectation '{item.type}' "
                "(a Great Expectations expectation or one of quality/expectations.py)"
            ) from None
        unknown = [c for c in _columns_named(item) if c not in columns]
        if unknown:
            raise ConfigError(
                f"{at}: unknown column(s) {unknown} in {spec.layer}.{spec.table}; "
                f"its columns are {list(columns)}"
            )
        kwargs = {k: _resolve(v, city, as_of, at) for k, v in item.kwargs.items()}
        if item.when:
            kwargs["row_condition"] = _row_condition(item.when, at)
        meta = {"severity": item.severity, **({"notes": item.notes} if item.notes else {})}
        try:
            built.append(cls(**kwargs, meta=meta))
        except (GxValidationError, ValidationError, TypeError, ValueError) as exc:
            raise ConfigError(f"{at}: wrong arguments: {exc}") from exc
    return built


def _read_spec(path: Path) -> SuiteSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return SuiteSpec.model_validate(data)
    except (ValidationError, yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid suite: {exc}") from exc


def load_suite(
    path: Path,
    city: City,
    contracts: dict[str, SourceContract] | None = None,
    as_of: dt.date | None = None,
) -> Suite:
    """The table's whole suite: generated expectations, then the file's (path may not exist for
    bronze and silver tables)."""
    contracts = _contracts() if contracts is None else contracts
    layer = path.parent.name
    if path.exists():
        own = _read_spec(path)
        if (own.layer, own.table) != (layer, path.stem):
            raise ConfigError(
                f"{path}: says table {own.layer}.{own.table}, but the file's place says "
                f"{layer}.{path.stem}; one name travels the whole path, so they must agree"
            )
    elif layer == "gold":
        raise ConfigError(f"{path}: every gold table needs its suite file (business rules)")
    else:
        own = SuiteSpec(table=path.stem, layer=layer)
    try:
        table = table_spec(layer, own.table, contracts)  # resolved once
    except (KeyError, ConfigError) as exc:
        raise ConfigError(f"{path}: {exc.args[0]}") from None
    generated = generated_rules(table)
    spec = SuiteSpec(
        table=own.table,
        layer=layer,
        description=own.description,
        expectations=[ExpectationSpec(**g) for g in generated] + own.expectations,
    )
    expectations = build_expectations(spec, str(path), table.columns, city, as_of)
    return Suite(spec, path if path.exists() else None, expectations, table.columns, table.personal)


def suite_for(
    layer: str,
    table: str,
    city: City,
    contracts: dict[str, SourceContract] | None = None,
    as_of: dt.date | None = None,
) -> Suite:
    if layer not in LAYERS:
        raise ValueError(f"no suites for layer '{layer}' (one of {', '.join(LAYERS)})")
    return load_suite(suite_path(table, layer), city, contracts, as_of)


def load_all(city: City, contracts: dict[str, SourceContract]) -> list[Suite]:
    """Every table's suite (what a test and `citylake config` check): fails on the first error."""
    found = [suite_for(layer, table, city, contracts) for layer, table in tables(contracts)]
    known = {(s.spec.layer, s.spec.table) for s in found}
    for layer in LAYERS:
        for path in sorted((SUITES_DIR / layer).glob("*.yaml")):
            if (layer, path.stem) not in known:
                raise ConfigError(f"{path}: no {layer} table '{path.stem}' to apply this suite to")
    return found
