"""Why a row was quarantined: the reason rules and their texts (quality/reason_codes.yaml, Chinese
for the departments and English for engineers), read in one place for standardize, the delivery
reports and the serving file's ref_reason table. A reason code is "<column>.<rule>".
"""

from __future__ import annotations

import functools

import yaml

from citylake.config import REPO_ROOT, ConfigError

REASON_CODES_FILE = REPO_ROOT / "quality" / "reason_codes.yaml"


@functools.cache
def reason_texts() -> dict[str, dict[str, str]]:
    """rule → {"zh": ..., "en": ...}, in the file's order."""
    texts = yaml.safe_load(REASON_CODES_FILE.read_text(encoding="utf-8"))
    broken = [r for r, t in texts.items() if not isinstance(t, dict) or set(t) != {"zh", "en"}]
    if broken:
        raise ConfigError(f"{REASON_CODES_FILE}: rules {broken} need exactly the keys zh and en")
    return texts


def require(code: str) -> str:
    """The code itself, once its rule is known (a typo in a rule name fails at once)."""
    if code.split(".", 1)[-1] not in reason_texts():
        raise KeyError(f"reason rule of '{code}' is not in {REASON_CODES_FILE.name}")
    return code
