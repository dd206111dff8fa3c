"""What several benchmarks start from: the sample city of one day in the landing zone, and (unless
asked not to) every source ingested and standardized. Done once per data root and scale; a marker
file says it is there, so a second run of a benchmark measures only what it measures.
"""

from __future__ import annotations

import datetime as dt
import time

DAY = dt.date(2026, 11, 27)
SEED = 20261128


def prepared_city(
    scale: float,
    *,
    day: dt.date = DAY,
    defect_rate: float | None = None,
    sources: list[str] | None = None,
    standardized: bool = True,
) -> None:
    """Sample the city for `day` into the current data root, then ingest and standardize the
    sources (all, or those named); a no-op when the same preparation is there already."""
    from citylake import flow
    from citylake.config import settings
    from citylake.sample import generate

    env, city, contracts = settings()
    marker = env.root / f".sample-{scale}-{defect_rate}-{'+'.join(sources or ['all'])}"
    marker = marker.with_name(marker.name + ("-silver" if standardized else "-landing"))
    if marker.exists():
        return
    started = time.perf_counter()
    extra = {} if defect_rate is None else {"defect_rate": defect_rate}
    generate(env, city, contracts, scale=scale, seed=SEED, delivery_date=day, **extra)
    if standardized:
        for source_id in sources or sorted(contracts):
            flow.ingest(source_id, day)
            flow.standardize(source_id, day)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    done = "ingested and standardized" if standardized else "in the landing zone"
    print(f"sample city at scale {scale} {done} in {time.perf_counter() - started:.0f} s")
