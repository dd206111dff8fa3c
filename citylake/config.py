"""Configuration: conf/city.yaml, conf/sources/*.yaml and conf/environments/<env>.yaml.

Everything is validated at load with pydantic. A wrong key or a wrong type is a ConfigError that
names the file and the key, so a typo in a contract never surfaces later as a Spark stack trace.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

import yaml
from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from citylake.classification import OPEN_ORDER, SHARING_ORDER, Classes, ColumnClasses
from citylake.errors import CityLakeError

M = TypeVar("M", bound=BaseModel)

REPO_ROOT = Path(__file__).resolve().parent.parent
# The city's clock: China keeps one time zone (China Standard Time, UTC+8) all year. Schedules,
# logical dates, Spark's session time zone and "yesterday" all read it here.
CITY_TIMEZONE = "Asia/Shanghai"
CONF_DIR = Path(os.environ.get("CITYLAKE_CONF_DIR", REPO_ROOT / "conf"))

# Passwords that anyone could guess; the production profile refuses them.
WELL_KNOWN_PASSWORDS = frozenset(
    {"", "admin", "airflow", "superset", "postgres", "password", "123456", "citylake", "changeme"}
)


class Frequency(StrEnum):
    """How often a source delivers (its contract's `frequency`), and what follows from it: the
    window within which the next delivery is on time, shown the same in `citylake freshness`, the
    delivery reports and the serving health tables."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"

    @property
    def label(self) -> str:
        return {"daily": "每日 daily", "weekly": "每周 weekly", "monthly": "每月 monthly"}[self]

    @property
    def window(self) -> relativedelta:
        """Calendar window: a monthly delivery of 01-31 is due by 02-28 (the month's last day)."""
        return {
            "daily": relativedelta(days=1),
            "weekly": relativedelta(weeks=1),
            "monthly": relativedelta(months=1),
        }[self]

    @property
    def interval_sql(self) -> str:
        """The window as a DuckDB INTERVAL literal, with the same month arithmetic."""
        return {"daily": "1 day", "weekly": "7 days", "monthly": "1 month"}[self]

    @property
    def longest_days(self) -> int:
        """The longest the window can be, in days (a month: 31)."""
        return {"daily": 1, "weekly": 7, "monthly": 31}[self]

    def due_by(self, delivered: dt.date) -> dt.date:
        """The last day the next delivery after one on `delivered` is still on time."""
        return delivered + self.window


class ConfigError(CityLakeError, ValueError):
    """A configuration file is missing, unreadable or invalid; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- city


class Division(_Strict):
    code: str = Field(pattern=r"^\d{6}$")
    name: str
    name_en: str
    predecessors: list[str] = []


class City(_Strict):
    code: str = Field(pattern=r"^\d{6}$")
    name: str
    name_en: str
    province: str
    province_code: str = Field(pattern=r"^\d{6}$")
    area_code: str
    divisions: list[Division]

    @property
    def division_codes(self) -> list[str]:
        return [d.code for d in self.divisions]

    def division_name(self, code: str) -> str:
        return next(d.name for d in self.divisions if d.code == code)

    @property
    def code_to_current(self) -> dict[str, str]:
        """Every code a resident's ID number may carry here (current and historical) → today's code."""
        mapping = {d.code: d.code for d in self.divisions}
        for division in self.divisions:
            for old in division.predecessors:
                mapping[old] = division.code
        return mapping


# ----------------------------------------------------------------------------- source contracts

ColumnType = Literal[
    "string",
    "integer",
    "decimal",
    "date",
    "timestamp",
    "id_number",
    "credit_code",
    "division_code",
    "phone",
    "boolean",
    "geometry",
]
PiiKind = Literal["id_number", "name", "phone", "address"]


class Column(ColumnClasses):
    """A delivered column; its own sharing, open and grade classes where they differ from the
    contract's (citylake.classification)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    header: str  # as delivered, in Chinese: the column's Chinese description
    # The column's English description, beside the Chinese header wherever silver shows a column.
    en: str = Field(min_length=1)
    type: ColumnType = "string"
    required: bool = False
    pii: PiiKind | None = None
    # A date that may lie after the delivery (an expiry, 有效期至); others in the future are errors.
    future_allowed: bool = False
    # Decimal places a decimal column keeps in silver (DECIMAL(18, scale), rounded half-up):
    # 4 for amounts and areas; 7 for degrees of longitude and latitude (about 1 cm).
    scale: int = Field(default=4, ge=0, le=10)
    description: str | None = None

    @property
    def label(self) -> str:
        """The column as silver describes it: the Chinese header, then its English description."""
        return f"{self.header} {self.en}"

    @model_validator(mode="after")
    def _scale_is_for_decimals(self) -> Column:
        if "scale" in self.model_fields_set and self.type != "decimal":
            raise ValueError(f"{self.name}: scale applies to decimal columns, not {self.type}")
        return self


class SourceContract(_Strict):
    source_id: str = Field(pattern=r"^[a-z]+__[a-z_]+$")
    title: str
    title_en: str
    department: str = Field(pattern=r"^[a-z]+$")
    department_name: str
    department_name_en: str
    library: Literal["population", "legal_entity", "spatial", "credit", "licence", "service"]
    format: Literal["csv", "xlsx", "jsonl", "geojson"]
    encoding: Literal["utf-8", "utf-8-sig", "gbk", "gb18030"] = "utf-8"
    delimiter: str = ","
    # XLSX: the sheet that holds the extract, by name (default: the first). Rows on other sheets
    # are not taken; a sheet with data is reported in the ingest summary.
    sheet: str | None = None
    frequency: Frequency
    # The silver table this source feeds (silver.<entity>); defaults to the source id.
    entity: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    # 共享 / 开放 / 分级 of the silver table, each with its reason; columns may state their own.
    classes: Classes
    business_key: list[str] = Field(min_length=1)
    # Columns whose changes silver keeps as history (SCD type 2: valid_from, valid_to, is_current);
    # a change to any other column corrects the current row in place.
    history: list[str] = []
    columns: list[Column] = Field(min_length=1)

    @property
    def source_name(self) -> str:
        return self.source_id.split("__", 1)[1]

    @property
    def silver_table(self) -> str:
        return self.entity or self.source_id

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def sharing(self) -> str:
        """The silver table's sharing class as the sharing catalogue lists it."""
        return self.classes.sharing.level

    def column_classes(self, name: str) -> Classes:
        return self.column(name).over(self.classes)

    @model_validator(mode="after")
    def _keys_are_columns(self) -> SourceContract:
        names = self.column_names
        if len(set(names)) != len(names):
            raise ValueError("columns: a column name appears twice")
        missing = [k for k in self.business_key if k not in names]
        if missing:
            raise ValueError(f"business_key: {missing} are not among the columns")
        unknown = [c for c in self.history if c not in names]
        if unknown:
            raise ValueError(f"history: {unknown} are not among the columns")
        for column in self.columns:
            classes = column.over(self.classes)
            # PIPL: personal data is never shared with everyone nor opened to the public.
            if column.pii and classes.sharing.level == SHARING_ORDER[0]:
                raise ValueError(
                    f"columns.{column.name}: personal data ({column.pii}) cannot be "
                    f"{SHARING_ORDER[0]}; give the column its own sharing class with the reason"
                )
            if column.pii and classes.open.level != OPEN_ORDER[-1]:
                raise ValueError(
                    f"columns.{column.name}: personal data ({column.pii}) is {OPEN_ORDER[-1]}, "
                    f"not {classes.open.level}"
                )
        return self


# ----------------------------------------------------------------------------- consumers


ServiceName = Literal["query", "verify", "exchange"]


class Consumer(_Strict):
    """A department that may use the data service (conf/consumers.yaml)."""

    code: str = Field(pattern=r"^[a-z]+$")
    name: str
    name_en: str
    services: list[ServiceName] = Field(min_length=1)
    oversight: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} {self.name_en}"


class Consumers(_Strict):
    consumers: list[Consumer] = Field(min_length=1)


# ----------------------------------------------------------------------------- environment


class SparkSettings(_Strict):
    master: str = "local[*]"
    connect_url: str | None = None
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(default=4, ge=1)
    local_ip: str = "127.0.0.1"
    extra: dict[str, str] = {}

    @field_validator("master")
    @classmethod
    def _known_master(cls, value: str) -> str:
        if not re.match(r"^(local(\[(\*|\d+)\])?|spark://[\w.-]+:\d+|yarn|k8s://.+)$", value):
            raise ValueError(
                f"'{value}' is not local[*], local[N], spark://host:port, yarn or k8s://"
            )
        return value

    @field_validator("connect_url")
    @classmethod
    def _connect_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sc://"):
            raise ValueError(f"'{value}' must look like sc://host:port")
        return value


class Services(_Strict):
    host: str = "127.0.0.1"
    airflow_port: int = 8080
    superset_port: int = 8088
    spark_connect_port: int = 15002
    # The data service (`citylake serve`): sharing catalogue, data API, ID check, Delta Sharing.
    service_port: int = 8090


class ServiceSettings(_Strict):
    """Limits of the data service, the same for every consumer."""

    # An access token lives this long; a consumer buys a new one with its client credentials.
    token_ttl_s: int = Field(default=900, ge=60, le=86_400)
    # Requests per second a consumer may make on average, and the burst it may make at once.
    rate_per_s: float = Field(default=1000.0, gt=0)
    burst: int = Field(default=2000, ge=1)
    # Requests a consumer may make in one city day (Asia/Shanghai).
    daily_quota: int = Field(default=2_000_000, ge=1)
    # Rows in one page of a query; a larger `limit` is refused, not truncated silently.
    page_limit: int = Field(default=1000, ge=1, le=100_000)
    # How long a presigned Delta Sharing file URL stays valid.
    file_url_ttl_s: int = Field(default=900, ge=60)
    # Server processes. Each enforces its share of the rate, burst and daily quota (the limits
    # divided by the number of workers), so together they never exceed them.
    workers: int = Field(default=2, ge=1, le=16)


class Metadata(_Strict):
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5433
    airflow_database: str = "citylake_airflow"
    superset_database: str = "citylake_superset"
    service_database: str = "citylake_service"


class QualitySettings(_Strict):
    # Tables of up to this many rows in a validation's scope are validated by Great Expectations
    # on pandas (a suite in milliseconds), larger ones on Spark (scales past one machine's memory).
    pandas_max_rows: int = Field(default=3_000_000, ge=0)


class LakeSettings(_Strict):
    # How long Delta keeps the log and the files of earlier versions: time travel (`citylake trace
    # --as-of`, `citylake history`, gold rebuilt "as of" a past day) reaches this far back. The
    # default, 400 days, keeps last year's same day within reach for a year-on-year comparison.
    retention_days: int = Field(default=400, ge=7)


class Environment(_Strict):
    name: Literal["local", "production"]
    data_root: Path
    spark: SparkSettings = SparkSettings()
    services: Services = Services()
    service: ServiceSettings = ServiceSettings()
    metadata: Metadata = Metadata()
    quality: QualitySettings = QualitySettings()
    lake: LakeSettings = LakeSettings()

    # Layout of the data root; every module asks here instead of joining paths itself.
    @property
    def root(self) -> Path:
        root = self.data_root
        return root if root.is_absolute() else (REPO_ROOT / root)

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def lake_root(self) -> Path:
        return self.root / "lake"

    @property
    def serving_file(self) -> Path:
        return self.root / "serving" / "city.duckdb"

    @property
    def restricted_file(self) -> Path:
        """The gold tables in clear (mode 600): for entitled roles and the data service only."""
        return self.root / "serving" / "restricted" / "city_clear.duckdb"

    @property
    def open_data_dir(self) -> Path:
        return self.root / "open_data"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def sample_dir(self) -> Path:
        return self.root / "sample"

    def table_path(self, layer: str, table: str) -> Path:
        return self.lake_root / layer / table

    def metadata_url(self, app: Literal["airflow", "superset", "service"]) -> str:
        """SQLAlchemy URL of an app's metadata database; production refuses guessable secrets."""
        if self.metadata.backend == "sqlite":
            return f"sqlite:///{self.root / 'metadata' / f'{app}.db'}"
        user = os.environ.get("CITYLAKE_PG_USER", "")
        password = os.environ.get("CITYLAKE_PG_PASSWORD", "")
        if not user or password.lower() in WELL_KNOWN_PASSWORDS or password == user:
            raise ConfigError(
                "production metadata needs CITYLAKE_PG_USER and a CITYLAKE_PG_PASSWORD that is not "
                "empty, not the user name and not a well-known default; refusing to start"
            )
        database = getattr(self.metadata, f"{app}_database")
        host, port = self.metadata.postgres_host, self.metadata.postgres_port
        return f"postgresql+psycopg2://{user}:{password}@{host}:{port}/{database}"


# ----------------------------------------------------------------------------- loading

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> dict:
    try:
        # The C loader when PyYAML has it: DAG files load every contract at parse time.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML in UTF-8: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _validate(model: type[M], path: Path, data: dict) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"key '{'.'.join(str(p) for p in err['loc']) or '(top)'}': {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def load_city(conf_dir: Path = CONF_DIR) -> City:
    path = conf_dir / "city.yaml"
    return _validate(City, path, _read_yaml(path))


def load_contract(path: Path) -> SourceContract:
    contract = _validate(SourceContract, path, _read_yaml(path))
    if contract.source_id != path.stem:
        raise ConfigError(
            f"{path}: key 'source_id' is '{contract.source_id}', the file name says "
            f"'{path.stem}'; one name travels the whole path, so they must agree"
        )
    return contract


def load_contracts(conf_dir: Path = CONF_DIR) -> dict[str, SourceContract]:
    paths = sorted((conf_dir / "sources").glob("*.yaml"))
    contracts = {c.source_id: c for c in map(load_contract, paths)}
    feeders: dict[str, str] = {}
    for contract in contracts.values():
        other = feeders.setdefault(contract.silver_table, contract.source_id)
        if other != contract.source_id:
            raise ConfigError(
                f"{conf_dir / 'sources' / (contract.source_id + '.yaml')}: key 'entity': "
                f"silver.{contract.silver_table} is fed by {other} already; one source per "
                "silver table (its ledger orders that source's batches)"
            )
    return contracts


def load_consumers(
    conf_dir: Path = CONF_DIR, contracts: dict[str, SourceContract] | None = None
) -> dict[str, Consumer]:
    """conf/consumers.yaml, checked against the contracts: every delivering department is a
    consumer (it approves applications for what it owns), under the name its contracts give."""
    path = conf_dir / "consumers.yaml"
    listed = _validate(Consumers, path, _read_yaml(path)).consumers
    consumers = {c.code: c for c in listed}
    if len(consumers) != len(listed):
        raise ConfigError(f"{path}: key 'consumers': a department code appears twice")
    for contract in (contracts if contracts is not None else load_contracts(conf_dir)).values():
        consumer = consumers.get(contract.department)
        if consumer is None:
            raise ConfigError(
                f"{path}: key 'consumers': {contract.department} ({contract.department_name}) "
                f"delivers {contract.source_id} but is not listed; it approves what it owns"
            )
        if consumer.name != contract.department_name:
            raise ConfigError(
                f"{path}: key 'consumers.{consumer.code}.name': '{consumer.name}', but "
                f"conf/sources/{contract.source_id}.yaml names it '{contract.department_name}'"
            )
    return consumers


def load_environment(name: str | None = None, conf_dir: Path = CONF_DIR) -> Environment:
    """The environment named by CITYLAKE_ENV (default local), with overrides from the environment."""
    name = name or os.environ.get("CITYLAKE_ENV", "local")
    path = conf_dir / "environments" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(
            f"{path}: no such environment '{name}' (CITYLAKE_ENV is local or production)"
        )
    data = _read_yaml(path)
    spark = dict(data.get("spark") or {})
    overrides = {
        "CITYLAKE_SPARK_MASTER": ("spark", "master"),
        "CITYLAKE_SPARK_CONNECT": ("spark", "connect_url"),
        "CITYLAKE_DATA_ROOT": (None, "data_root"),
    }
    for variable, (section, key) in overrides.items():
        value = os.environ.get(variable)
        if value:
            (spark if section == "spark" else data)[key] = value
    data["spark"] = spark
    # The data service's limits: CITYLAKE_SERVICE_<SETTING>, e.g. CITYLAKE_SERVICE_RATE_PER_S.
    service = dict(data.get("service") or {})
    for key in ServiceSettings.model_fields:
        value = os.environ.get(f"CITYLAKE_SERVICE_{key.upper()}")
        if value:
            service[key] = value
    data["service"] = service
    return _validate(Environment, path, data)


@functools.cache
def settings() -> tuple[Environment, City, dict[str, SourceContract]]:
    """Environment, city and contracts, loaded once per process."""
    return load_environment(), load_city(), load_contracts()


def city_yesterday() -> dt.date:
    """Yesterday on the city's clock: the day of the run the scheduler creates for the last
    complete daily interval, whatever this machine's time zone."""
    return dt.datetime.now(ZoneInfo(CITY_TIMEZONE)).date() - dt.timedelta(days=1)
