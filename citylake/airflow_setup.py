"""Airflow itself on this machine: what its processes import at start (the scheduler preloads the
pipeline for the tasks it forks) and the helpers scripts/airflow.sh calls, so that bash never
parses YAML or JSON:

    python -m citylake.airflow_setup shell-settings|metadata-url|local-settings|health URL
"""

from __future__ import annotations

import json
import time

from citylake.config import load_environment

# ----------------------------------------------------------------------------- task start-up

# What every task imports before it does any work: the pipeline steps with Spark's Connect
# client, Great Expectations and pandas — many seconds of imports on this machine, per task.
PRELOADED = ("citylake.flow", "pyspark.sql.connect.session")

LOCAL_SETTINGS = f"""\
# Written by scripts/airflow.sh init; do not edit. Airflow imports this file in each of its
# processes. The scheduler alone imports the pipeline's heavy modules ({", ".join(PRELOADED)})
# once: LocalExecutor forks its workers from the scheduler and every task from a worker, so each
# task starts with them loaded (citylake.airflow_setup.preload).
import sys

if sys.argv[1:2] == ["scheduler"]:
    from citylake.airflow_setup import preload

    preload()
"""


def preload() -> None:
    """Import PRELOADED into this process (the scheduler), so the tasks forked from it start with
    them. A failure here is logged, never fatal: each task imports what it needs anyway."""
    import importlib
    import logging

    started = time.monotonic()
    for module in PRELOADED:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the scheduler must start whatever a module does
            logging.getLogger(__name__).exception("citylake: preloading %s failed", module)
    logging.getLogger(__name__).info(
        "citylake: preloaded %s in %.1f s", ", ".join(PRELOADED), time.monotonic() - started
    )


# ----------------------------------------------------------------------------- scripts/airflow.sh


def _main(argv: list[str]) -> int:
    """Helpers for scripts/airflow.sh, which should not parse YAML or JSON in bash."""
    import shlex
    import sys

    command = argv[0] if argv else ""
    if command == "shell-settings":
        env = load_environment()
        # Always computed, so a production profile with default credentials stops here; printed
        # only for SQLite, whose URL holds no secret.
        url = env.metadata_url("airflow")
        url = url if env.metadata.backend == "sqlite" else ""
        for name, value in {
            "DATA_ROOT": env.root,
            "HOST": env.services.host,
            "PORT": env.services.airflow_port,
            "BACKEND": env.metadata.backend,
            "METADATA_URL": url,
        }.items():
            print(f"{name}={shlex.quote(str(value))}")
        return 0
    if command == "metadata-url":
        sys.stdout.write(load_environment().metadata_url("airflow"))
        return 0
    if command == "local-settings":
        sys.stdout.write(LOCAL_SETTINGS)
        return 0
    if command == "health" and len(argv) == 2:
        from citylake.airflow_api import health

        healthy, body = health(argv[1])
        print(json.dumps(body))
        return 0 if healthy else 1
    print(
        "usage: python -m citylake.airflow_setup shell-settings|metadata-url|local-settings|health URL",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    import sys

    from citylake.config import ConfigError

    try:
        raise SystemExit(_main(sys.argv[1:]))
    except ConfigError as error:
        print(f"citylake: {error}", file=sys.stderr)
        raise SystemExit(1) from None
