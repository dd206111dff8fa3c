-- mart_division_map: One row per polygon of a division's boundary (the multipolygons split), its
-- outer ring as a JSON array of [lon, lat] (deck.gl polygon layer, line_type json), simplified to
-- ~100 m.
WITH parts AS (
    SELECT division_code,
        unnest(ST_Dump(ST_SimplifyPreserveTopology(ST_GeomFromText(geometry_wkt), 0.001)))
            .geom AS geom
    FROM spatial__division WHERE geometry_wkt IS NOT NULL)
SELECT k.*, row_number() OVER (PARTITION BY division_code ORDER BY ST_Area(geom) DESC)
        AS polygon_number,
    json_extract(ST_AsGeoJSON(ST_ExteriorRing(geom)), '$.coordinates')::VARCHAR
        AS boundary_json
FROM parts JOIN mart_division_kpi k USING (division_code)
ORDER BY division_code, polygon_number
