"""GeoJSON: one bronze row per feature of a FeatureCollection, properties matched to the contract's
headers by name, the geometry kept as its JSON text with the reasons it is unusable
(self-intersection, an open ring, a shape outside the city's bounds)."""

from __future__ import annotations

import json
from pathlib import Path

import shapely
import shapely.errors
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from shapely.geometry import shape

from citylake.config import SourceContract
from pipelines.delivery import (
    EXTRA_COLUMNS,
    INGEST_REASONS,
    SPARK_CHARSETS,
    Delivery,
    DeliveryError,
    layout_of,
)
from pipelines.readers import Read
from pipelines.readers.text import inspect_delivery

BOUNDS_MARGIN_DEGREES = 0.01  # about 1 km: the division boundaries' own precision


_FEATURE = "struct<type: string, properties: map<string, string>, geometry: string>"


def geometry_reasons(
    path: Path, contract: SourceContract, bounds: tuple[float, float, float, float]
) -> dict[int, list[str]]:
    """Reason codes of the features (by 0-based position) whose geometry is no valid polygon
    (OGC simple features, as GEOS judges: a ring that crosses itself or another ring,
    `<column>.self_intersection`) or reaches outside the city's bounds (its divisions' bounding
    box, `<column>.outside_city`). A geometry whose structure is wrong (not a Polygon or
    MultiPolygon, a ring not closed, too few positions) is silver's `malformed_geometry`."""
    column = next((c.name for c in contract.columns if c.type == "geometry"), None)
    if column is None:
        return {}
    collection = json.loads(path.read_text(encoding=contract.encoding))
    min_x, min_y, max_x, max_y = bounds
    margin = BOUNDS_MARGIN_DEGREES
    reasons: dict[int, list[str]] = {}
    for position, feature in enumerate(collection.get("features") or []):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in (
            "Polygon",
            "MultiPolygon",
        ):
            continue
        try:
            polygon = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.ShapelyError):
            continue  # malformed structure: silver's rule names it
        found = []
        if not polygon.is_valid:
            found.append(f"{column}.self_intersection")
        x0, y0, x1, y1 = polygon.bounds
        if x0 < min_x - margin or y0 < min_y - margin or x1 > max_x + margin or y1 > max_y + margin:
            found.append(f"{column}.outside_city")
        if found:
            reasons[position] = found
    return reasons


def read_geojson(
    spark: SparkSession,
    contract: SourceContract,
    delivery: Delivery,
    bounds: tuple[float, float, float, float],
) -> tuple[Delivery, DataFrame]:
    """A FeatureCollection: one bronze row per feature, properties matched to the contract's
    headers by name, the geometry member kept as its JSON text (Spark's JSON reader hands a
    nested object to a string field as its text); the reasons of geometry_reasons."""
    collection = (
        spark.read.option("multiLine", True)
        .option("encoding", SPARK_CHARSETS.get(contract.encoding, contract.encoding))
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_malformed_file")
        .schema(f"type string, features array<{_FEATURE}>, _malformed_file string")
        .json(str(delivery.path))
    )
    keys = F.array_distinct(
        F.flatten(
            F.transform(
                F.coalesce("features", F.array().cast(f"array<{_FEATURE}>")),
                lambda f: F.coalesce(F.map_keys(f["properties"]), F.array().cast("array<string>")),
            )
        )
    )
    heads = collection.select(
        "type", "_malformed_file", F.size("features").alias("n"), keys.alias("keys")
    ).collect()
    if len(heads) != 1 or heads[0]["_malformed_file"] is not None:
        raise DeliveryError(
            f"{delivery.path}: not one valid JSON document (truncated or malformed); a GeoJSON "
            "FeatureCollection is expected"
        )
    (head,) = heads
    features = head["n"] if head["n"] is not None else -1  # size(null) is -1 or null
    if head["type"] != "FeatureCollection" or features < 0:
        raise DeliveryError(
            f"{delivery.path}: a GeoJSON FeatureCollection with a 'features' array is expected, found "
            f"type {head['type']!r}{'' if features >= 0 else ' without features'}"
        )
    layout = layout_of(delivery.path, contract, sorted(head["keys"]), "feature properties")
    known = [c.header for c in contract.columns]
    feature = F.col("feature")
    columns = [
        (feature["geometry"] if c.type == "geometry" else feature["properties"][c.header]).alias(
            c.name
        )
        for c in contract.columns
    ]
    extras = F.map_filter(feature["properties"], lambda k, _: ~k.isin(known))
    invalid = geometry_reasons(delivery.path, contract, bounds)
    features_frame = collection.select(F.posexplode("features").alias("position", "feature"))
    if invalid:
        found = spark.createDataFrame(
            list(invalid.items()), "position int, _geometry_reasons array<string>"
        )
        features_frame = features_frame.join(F.broadcast(found), "position", "left")
    else:
        features_frame = features_frame.withColumn(
            "_geometry_reasons", F.lit(None).cast("array<string>")
        )
    frame = features_frame.select(
        *columns,
        F.when(F.size(extras) > 0, extras).alias(EXTRA_COLUMNS),
        F.when(
            feature.isNull() | (F.coalesce(feature["type"], F.lit("")) != "Feature"),
            F.coalesce(F.to_json(feature), F.lit("null")),
        ).alias("_malformed_line"),
        F.col("_geometry_reasons").alias(INGEST_REASONS),
        (F.col("position") + 1).cast("long").alias("_row_number"),
    )
    return Delivery(delivery.path, delivery.source_file, delivery.sha256, features, layout), frame


def read(spark, contract, path, *, landing, sha256, staging=None, bounds) -> Read:
    """A FeatureCollection; the strict decode first names a wrong encoding's line and byte."""
    inspected = inspect_delivery(path, contract, landing, sha256=sha256)
    delivery, frame = read_geojson(spark, contract, inspected, bounds)
    return Read(delivery, frame, delivery.rows)
