"""One reader per delivery format, in one table: format → read(spark, contract, path, ...), each
returning what it found (a Read). pipelines.ingest picks the contract's reader and writes bronze;
nothing in it branches on the format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from pipelines.delivery import Delivery


@dataclass(frozen=True)
class Read:
    delivery: Delivery  # the file as counted outside Spark: rows, hash, header layout
    frame: DataFrame  # bronze's columns, numbered rows
    counted: int  # records Spark's reader found; must equal delivery.rows
    left_aside: dict = field(default_factory=dict)  # what the reader did not take, to report


Reader = Callable[..., Read]


def readers() -> dict[str, Reader]:
    """The contract's `format` → its reader (imported on first use: openpyxl, shapely)."""
    from pipelines.readers import geojson, text, xlsx

    return {"csv": text.read, "jsonl": text.read, "xlsx": xlsx.read, "geojson": geojson.read}
