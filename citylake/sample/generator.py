"""generate(): writes the sample city's department extracts into the landing zone, with ground truth.

Each extract is built in chunks of CHUNK_ROWS rows from the shared world (world.py), spoiled at
the defect rate (defects.py) and appended to its file (writers.py). Generators are seeded by
(seed, source id, chunk number), so the same scale, seed and delivery date give byte-identical
files, whichever subset of sources is asked for.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citylake.config import City, Environment, SourceContract
from citylake.sample.defects import DefectPlanter
from citylake.sample.sources import BUILDERS
from citylake.sample.world import World, rng_for
from citylake.sample.writers import open_writer

CHUNK_ROWS = 100_000
GROUND_TRUTH_COLUMNS = ("source_id", "file", "row_number", "column", "defect")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SourceFile:
    """One extract as written: where, how many data rows, how many of them carry a defect."""

    source_id: str
    path: Path
    rows: int
    defect_rows: int


@dataclass(frozen=True)
class SampleSummary:
    files: dict[str, SourceFile]
    ground_truth: Path

    @property
    def total_rows(self) -> int:
        return sum(f.rows for f in self.files.values())


def landing_path(env: Environment, contract: SourceContract, delivery_date: dt.date) -> Path:
    """landing/<department>/<source>/<YYYY-MM-DD>/<source>_<YYYYMMDD>.<format>"""
    file_name = f"{contract.source_name}_{delivery_date:%Y%m%d}.{contract.format}"
    return (
        env.landing
        / contract.department
        / contract.source_name
        / delivery_date.isoformat()
        / file_name
    )


def generate(
    env: Environment,
    city: City,
    contracts: dict[str, SourceContract],
    *,
    scale: float,
    seed: int,
    delivery_date: dt.date,
    defect_rate: float = 0.02,
    sources: list[str] | None = None,
    progress: Progress | None = None,
) -> SampleSummary:
    """Write one delivery of every (or each named) source and env.sample_dir/ground_truth.csv.

    scale 1.0 is the whole city (about 2,000,000 residents); defect_rate is the share of rows
    that carry one planted defect. Ground-truth rows name the file relative to env.landing.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not 0 <= defect_rate <= 1:
        raise ValueError(f"defect_rate is a share of rows between 0 and 1, got {defect_rate}")
    selected = list(sources) if sources is not None else sorted(contracts)
    unknown = [s for s in selected if s not in contracts or s not in BUILDERS]
    if unknown:
        raise ValueError(
            f"no contract in conf/sources/ or no sample builder in citylake/sample/sources.py for "
            f"{unknown}; sources with both: {sorted(set(contracts) & set(BUILDERS))}"
        )

    world = World(city, scale=scale, seed=seed, delivery_date=delivery_date)
    ground_truth = env.sample_dir / "ground_truth.csv"
    ground_truth.parent.mkdir(parents=True, exist_ok=True)
    files = {}
    with ground_truth.open("w", encoding="utf-8", newline="") as truth_file:
        truth = csv.writer(truth_file, lineterminator="\n")
        truth.writerow(GROUND_TRUTH_COLUMNS)
        for source_id in selected:
            files[source_id] = _write_source(
                env,
                world,
                contracts[source_id],
                delivery_date,
                defect_rate,
                truth.writerows,
                progress,
            )
    return SampleSummary(files, ground_truth)


def _write_source(
    env: Environment,
    world: World,
    contract: SourceContract,
    delivery_date: dt.date,
    defect_rate: float,
    record_defects: Callable[[Iterable[tuple]], object],
    progress: Progress | None,
) -> SourceFile:
    builder = BUILDERS[contract.source_id]
    total = builder.row_count(world)
    path = landing_path(env, contract, delivery_date)
    relative = path.relative_to(env.landing).as_posix()
    planter = DefectPlanter(contract, world.city, defect_rate)
    writer = open_writer(path, contract, delivery_date)
    defect_rows = 0
    try:
        if total == 0:
            writer.write({name: np.empty(0, dtype=object) for name in contract.column_names})
            if progress is not None:
                progress(contract.source_id, 0, 0)
        for chunk_index, start in enumerate(range(0, total, CHUNK_ROWS)):
            rows = np.arange(start, min(start + CHUNK_ROWS, total))
            chunk = builder.build(world, rng_for(world.seed, contract.source_id, chunk_index), rows)
            _check_columns(chunk, contract)
            defects = planter.plant(
                chunk, rng_for(world.seed, contract.source_id, "defects", chunk_index)
            )
            writer.write(chunk)
            record_defects(
                (contract.source_id, relative, start + d.row + 1, d.column, d.kind) for d in defects
            )
            defect_rows += len(defects)
            if progress is not None:
                progress(contract.source_id, start + len(rows), total)
    finally:
        writer.close()
    return SourceFile(contract.source_id, path, total, defect_rows)


def _check_columns(chunk: dict[str, np.ndarray], contract: SourceContract) -> None:
    built, declared = set(chunk), set(contract.column_names)
    if built != declared:
        raise ValueError(
            f"conf/sources/{contract.source_id}.yaml and citylake/sample/sources.py disagree: "
            f"columns only in the contract {sorted(declared - built)}, only in the builder "
            f"{sorted(built - declared)}; change one of them so both name the same columns"
        )
