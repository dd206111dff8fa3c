"""Secrets in the secrets folder: each written once, readable by its owner only from its first
byte (created mode 600, never chmod-ed after), and swapped in whole so a reader never sees half."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


def read_or_create(path: Path, nbytes: int) -> str:
    """The secret in path, or a new random one (token_urlsafe(nbytes)) written there first."""
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        write(path, secrets.token_urlsafe(nbytes))
    return path.read_text(encoding="utf-8").strip()
