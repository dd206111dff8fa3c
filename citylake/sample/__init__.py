"""The sample city: realistic, reproducible department extracts with planted, recorded defects.

`generate(env, city, contracts, scale=..., seed=..., delivery_date=...)` writes every source's
extract into the landing zone and the ground truth of its defects to env.sample_dir.
"""

from citylake.sample.defects import DEFECT_KINDS
from citylake.sample.generator import SampleSummary, SourceFile, generate, landing_path

__all__ = ["DEFECT_KINDS", "SampleSummary", "SourceFile", "generate", "landing_path"]
