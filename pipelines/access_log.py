"""留痕 into the lake: the data service's access log (its state database) → ops.access_log.

Rows are carried in id order from the first id ops.access_log does not hold yet, so a run that
dies halfway is resumed by the next and no row is carried twice. An ID number or mobile number
in a request path (a lookup by key) is masked on the way: the clear path stays in the service's
state, which only the security officer reads.
"""

from __future__ import annotations

import datetime as dt
import json

from citylake import masking
from citylake.lake import Lake
from citylake.service_state import Store
from pipelines import ops

BATCH = 50_000


def _masked_path(path: str) -> str:
    return masking.PERSONAL_VALUE.sub(lambda m: masking.mask(m.group(0), "text"), path)


def _row(entry: dict) -> dict:
    at = entry["at"]
    if at.tzinfo is None:  # SQLite gives back naive UTC
        at = at.replace(tzinfo=dt.UTC)
    return entry | {
        "at": at,
        "path": _masked_path(entry["path"]),
        "fields": None
        if entry["fields"] is None
        else json.dumps(entry["fields"], ensure_ascii=False),
        "clear_fields": None
        if entry["clear_fields"] is None
        else json.dumps(entry["clear_fields"], ensure_ascii=False),
    }


def carry(lake: Lake, store: Store) -> dict:
    """Append every access not in ops.access_log yet; returns what was carried."""
    last = 0
    if lake.exists("ops", ops.ACCESS_LOG):
        last = lake.query(f"SELECT coalesce(max(id), 0) FROM {lake.scan('ops', ops.ACCESS_LOG)}")[
            0
        ][0]
    carried = 0
    while True:
        rows = store.access_rows(after_id=last, limit=BATCH)
        if not rows:
            break
        ops.append(lake, ops.ACCESS_LOG, [_row(r) for r in rows])
        carried += len(rows)
        last = rows[-1]["id"]
    return {"step": "access_log", "carried": carried, "last_id": last}
