"""Named locks between CityLake processes on this machine: two runs never write the same silver or
gold table, or publish, at the same time (a backfill of D while D+1 runs is serialized, not
interleaved). Advisory file locks (flock) under <data root>/run/locks; the kernel releases them
when a process dies, so a killed task never leaves a lock behind.

Airflow's LocalExecutor runs every task on this machine, so these suffice here; tasks on several
machines would need the locks of a shared server (PostgreSQL advisory locks) instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator

from citylake.config import Environment


class LockTimeout(TimeoutError):
    """Another run held the lock for longer than the caller would wait (transient: retried)."""


def lock_path(env: Environment, name: str) -> str:
    folder = env.root / "run" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock"))


@contextlib.contextmanager
def held(env: Environment, name: str, timeout_s: float = 3600.0) -> Iterator[None]:
    """Hold the lock `name` (e.g. 'silver.person', 'publish'), waiting up to timeout_s for it."""
    descriptor = os.open(lock_path(env, name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"lock '{name}' still held by another CityLake run after {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
