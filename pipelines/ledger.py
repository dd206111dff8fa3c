"""The silver ledger (ops.silver_ledger): which batches a silver table holds, in the order they
were applied, with the table's Delta version before and after each.

Silver is the fold of its batches in delivery order: (delivery date, arrival time, batch id).
Applying a batch that belongs before batches already applied (a late file for an earlier day, or
days run out of order) first rewinds silver to the version before the first of those, then
applies the late batch and the later ones again, so the result is the one an in-order run gives.
Applying a batch that is already in the ledger changes nothing: a rerun or a backfill of a day
leaves silver as the later days made it.

The ledger also says what silver looked like on any day: the version after the last batch
delivered on or before it (`version_as_of`), which gold reads to build "as of" that day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from citylake.lake import Lake
from pipelines import ops


@dataclass(frozen=True, order=True)
class Batch:
    """A batch in ledger order."""

    delivery_date: dt.date
    arrived_at: dt.datetime
    batch_id: str


@dataclass(frozen=True)
class Entry:
    batch: Batch
    version_before: int
    version_after: int


def entries(lake: Lake, silver_table: str) -> list[Entry]:
    """The batches applied to silver.<silver_table>, in ledger order."""
    relation = lake.scan("ops", ops.LEDGER)
    if relation is None:
        return []
    rows = lake.query(
        f"SELECT delivery_date, arrived_at, batch_id, version_before, version_after "
        f"FROM {relation} WHERE silver_table = ? "
        "ORDER BY delivery_date, arrived_at, batch_id",
        [silver_table],
    )
    return [Entry(Batch(d, a, b), before, after) for d, a, b, before, after in rows]


@dataclass(frozen=True)
class Plan:
    """What bringing silver up to a set of batches takes."""

    rewind_to: int | None  # the version to restore first (-1: drop the table), None: no rewind
    undone: list[Entry]  # ledger entries removed by the rewind (applied again after)
    to_apply: list[Batch]  # in ledger order

    @property
    def changes(self) -> bool:
        return bool(self.to_apply) or self.rewind_to is not None


def plan(applied: list[Entry], wanted: list[Batch], current_version: int | None) -> Plan:
    """Silver holds `applied`; it should hold `applied` plus `wanted`, in ledger order.

    `current_version` is silver's effective_version now: if it is not the version the ledger's last entry
    left (a run died between its silver commit and its ledger entry), silver goes back to that
    entry's version first."""
    held = [e.batch for e in applied]
    target = sorted(set(held) | set(wanted))
    same = 0
    while same < len(held) and held[same] == target[same]:
        same += 1
    undone = applied[same:]
    rewind_to = None
    ledger_version = applied[same - 1].version_after if same else -1
    expected_now = applied[-1].version_after if applied else -1
    if undone or (current_version if current_version is not None else -1) != expected_now:
        rewind_to = ledger_version
    return Plan(rewind_to, undone, target[same:])


def rewind(lake: Lake, silver_table: str, planned: Plan) -> None:
    """Take the undone entries out of the ledger, then bring silver back to the version before
    them. In this order, a run that dies half-way leaves a ledger whose last entry names the
    version to restore, and the next run's plan restores it."""
    if planned.rewind_to is None:
        return
    if planned.undone:
        ids = ", ".join(f"'{e.batch.batch_id}'" for e in planned.undone)
        lake.delete_rows(
            "ops", ops.LEDGER, f"silver_table = '{silver_table}' AND batch_id IN ({ids})"
        )
    if not lake.exists("silver", silver_table):
        return
    if planned.rewind_to < 0:
        import shutil

        shutil.rmtree(lake.table_path("silver", silver_table))
    elif effective_version(lake, silver_table) != planned.rewind_to:
        lake.restore("silver", silver_table, planned.rewind_to)


def effective_version(lake: Lake, silver_table: str) -> int | None:
    """silver's current version, or, when that commit is a RESTORE, the version it restored
    (recursively): the content the ledger knows it by. None when the table does not exist."""
    if not lake.exists("silver", silver_table):
        return None
    version = lake.version("silver", silver_table)
    while True:
        info = lake.commit("silver", silver_table, version)
        if info.get("operation") != "RESTORE":
            return version
        version = int((info.get("operationParameters") or {})["version"])


def record(lake: Lake, source_id: str, silver_table: str, batch: Batch, **figures) -> None:
    ops.append(
        lake,
        ops.LEDGER,
        [
            {
                "source_id": source_id,
                "silver_table": silver_table,
                "batch_id": batch.batch_id,
                "delivery_date": batch.delivery_date,
                "arrived_at": batch.arrived_at,
                "applied_at": ops.now(),
                **figures,
            }
        ],
    )


def version_as_of(lake: Lake, silver_table: str, day: dt.date) -> int | None:
    """silver.<silver_table>'s version as it stood at the end of `day`: after the last batch
    delivered on or before it. None when no batch that old was applied (the table did not exist
    yet); the current version when the table has no ledger (built before the ledger existed)."""
    applied = entries(lake, silver_table)
    if not applied:
        return lake.version("silver", silver_table) if lake.exists("silver", silver_table) else None
    upto = [e for e in applied if e.batch.delivery_date <= day]
    return upto[-1].version_after if upto else None
