"""Freshness: is every department delivering as often as its contract says?

Each contract states its `frequency` (daily, weekly, monthly). A source is overdue on a date when
its last delivery on or before that date (ops.ingest_manifest) is older than its window — more
than one day, seven days or one calendar month — or when it never delivered at all.

overdue_sources() is what the orchestration calls for alerts; `citylake freshness` prints the
whole table. The manifest is read with DuckDB (a small Delta table): no Spark session needed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from citylake.config import Environment, SourceContract


@dataclass(frozen=True)
class Freshness:
    source_id: str
    department: str
    department_name: str
    title: str
    frequency: str
    last_delivery: dt.date | None
    due_by: dt.date | None  # the last day the next delivery is still on time
    overdue: bool
    days_overdue: int | None

    def as_dict(self) -> dict:
        return {
            k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(self).items()
        }


def last_deliveries(env: Environment, on_date: dt.date) -> dict[str, dt.date]:
    """source_id → the newest delivery date on or before on_date, from ops.ingest_manifest."""
    from citylake.lake import reader, scan_of

    manifest = scan_of(env, "ops", "ingest_manifest")
    if manifest is None:
        return {}
    with reader() as con:
        rows = con.execute(
            f"SELECT source_id, max(delivery_date) FROM {manifest} "
            "WHERE delivery_date <= ? GROUP BY source_id",
            [on_date],
        ).fetchall()
    return dict(rows)


def freshness(
    contracts: dict[str, SourceContract], last: dict[str, dt.date], on_date: dt.date
) -> list[Freshness]:
    """Every source's standing on on_date (pure: the deliveries are given)."""
    found = []
    for contract in sorted(contracts.values(), key=lambda c: c.source_id):
        delivered = last.get(contract.source_id)
        due_by = contract.frequency.due_by(delivered) if delivered else None
        overdue = due_by is None or on_date > due_by
        found.append(
            Freshness(
                source_id=contract.source_id,
                department=contract.department,
                department_name=contract.department_name,
                title=contract.title,
                frequency=contract.frequency.value,
                last_delivery=delivered,
                due_by=due_by,
                overdue=overdue,
                days_overdue=(on_date - due_by).days if due_by and overdue else None,
            )
        )
    return found


def overdue_sources(
    on_date: dt.date | None = None,
    env: Environment | None = None,
    contracts: dict[str, SourceContract] | None = None,
) -> list[Freshness]:
    """The sources overdue on on_date (default today): what an alert should name."""
    from citylake.config import settings

    default_env, _, default_contracts = settings()
    env, contracts = env or default_env, contracts or default_contracts
    on_date = on_date or dt.date.today()
    return [f for f in freshness(contracts, last_deliveries(env, on_date), on_date) if f.overdue]
