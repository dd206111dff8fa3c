"""The one SparkSession factory. Every pipeline, test and DAG task gets its session here.

With `spark.connect_url` (sc://host:port) set, the session is a thin Spark Connect client of the
long-lived server `make run` starts, so an Airflow task pays no JVM start. Otherwise a classic
session on `spark.master` (local[*] or spark://host:port) with the Delta jars from .cache/jars.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from citylake.config import CITY_TIMEZONE, REPO_ROOT, Environment, load_environment

JARS_DIR = Path(os.environ.get("CITYLAKE_JARS_DIR", REPO_ROOT / ".cache" / "jars"))
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars() -> list[Path]:
    jars = sorted(JARS_DIR.glob("delta-*.jar"))
    if not any(j.name.startswith("delta-spark") for j in jars):
        raise RuntimeError(
            f"Delta jars not found in {JARS_DIR}: run `make bootstrap` (it resolves "
            "io.delta:delta-spark from Maven Central into that folder)"
        )
    return jars


def session_conf(env: Environment) -> dict[str, str]:
    """Spark configuration for a classic session or for the Spark Connect server."""
    conf = {
        "spark.jars": ",".join(str(j) for j in delta_jars()),
        "spark.driver.memory": env.spark.driver_memory,
        "spark.sql.shuffle.partitions": str(env.spark.shuffle_partitions),
        "spark.default.parallelism": str(env.spark.shuffle_partitions),
        "spark.driver.host": env.spark.local_ip,
        "spark.driver.bindAddress": env.spark.local_ip,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Delta's snapshot state defaults to 50 partitions: far too many for 2 cores.
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.session.timeZone": CITY_TIMEZONE,
        "spark.sql.ansi.enabled": "false",
        # Spark 4's CSV reader takes only UTF and ISO charsets unless Java's are allowed; the
        # departments send GBK and GB18030.
        "spark.sql.legacy.javaCharsets": "true",
        # Python workers (the few Python UDFs Great Expectations runs) use this environment's
        # interpreter, not whatever python3 is first on the PATH, which lacks our packages.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        **DELTA_CONF,
        # Every table Spark creates keeps its log and earlier files as long as conf/ says
        # (environments/<env>.yaml lake.retention_days), so time travel reaches that far back.
        **retention_properties(env, "spark.databricks.delta.properties.defaults."),
        **env.spark.extra,
    }
    return conf


def retention_properties(env: Environment, prefix: str = "delta.") -> dict[str, str]:
    """The Delta table properties that keep `lake.retention_days` of history."""
    interval = f"interval {env.lake.retention_days} days"
    return {
        f"{prefix}logRetentionDuration": interval,
        f"{prefix}deletedFileRetentionDuration": interval,
    }


def get_spark(env: Environment | None = None, app_name: str = "citylake"):
    """A SparkSession configured from conf/ (Connect client, cluster or local)."""
    env = env or load_environment()
    os.environ.setdefault("SPARK_LOCAL_IP", env.spark.local_ip)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    if env.spark.connect_url:
        return SparkSession.builder.remote(env.spark.connect_url).getOrCreate()
    builder = SparkSession.builder.appName(app_name).master(env.spark.master)
    for key, value in session_conf(env).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def submit_args(env: Environment | None = None) -> list[str]:
    """spark-submit arguments carrying the same configuration (for the Spark Connect server)."""
    env = env or load_environment()
    conf = session_conf(env)
    args = ["--master", env.spark.master, "--driver-memory", conf.pop("spark.driver.memory")]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    return args


if __name__ == "__main__":
    # `python -m citylake.spark` prints the arguments, one per line, for scripts/spark.sh.
    print("\n".join(submit_args()))
