"""The `citylake` command line: sample city, pipeline runs, configuration checks."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from citylake.config import city_yesterday, settings
from citylake.errors import CityLakeError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

app = typer.Typer(
    help="CityLake 城市数据湖: the city's data lakehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DateOption = Annotated[
    dt.datetime | None,
    typer.Option(
        "--date",
        formats=["%Y-%m-%d"],
        help="Delivery (logical) date, YYYY-MM-DD; default yesterday.",
    ),
]


def _date(value: dt.datetime | None) -> dt.date:
    """The given day, else yesterday on the city's clock (citylake.config.city_yesterday)."""
    if value:
        return value.date()
    return city_yesterday()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@app.command()
def config() -> None:
    """Validate conf/ and summarise it (environment, city, source contracts)."""
    env, city, contracts = settings()
    console.print(f"environment [bold]{env.name}[/], data root {env.root}")
    console.print(
        f"city {city.name} {city.code}: " + ", ".join(f"{d.name} {d.code}" for d in city.divisions)
    )
    table = Table("source_id", "部门 department", "format", "encoding", "frequency", "key")
    for c in contracts.values():
        table.add_row(
            c.source_id,
            c.department_name,
            c.format,
            c.encoding,
            c.frequency,
            ",".join(c.business_key),
        )
    console.print(table)


@app.command()
def sample(
    scale: Annotated[
        float, typer.Option(help="1.0 = the whole city (~2,000,000 residents)")
    ] = 0.01,
    seed: Annotated[int, typer.Option(help="Same seed, same files, byte for byte")] = 20261128,
    date: DateOption = None,
    defect_rate: Annotated[float, typer.Option(help="Share of rows carrying a defect")] = 0.02,
) -> None:
    """Write a realistic sample city into the landing zone, with a ground-truth file of defects."""
    from citylake.sample import generate

    env, city, contracts = settings()
    with _progress() as progress:
        tasks: dict[str, int] = {}

        def report(source_id: str, done: int, total: int) -> None:
            if source_id not in tasks:
                tasks[source_id] = progress.add_task(source_id, total=total)
            progress.update(tasks[source_id], completed=done, total=total)

        summary = generate(
            env,
            city,
            contracts,
            scale=scale,
            seed=seed,
            delivery_date=_date(date),
            defect_rate=defect_rate,
            progress=report,
        )
    console.print(f"sample city written to {env.landing}; ground truth: {summary.ground_truth}")


@app.command()
def run(
    date: DateOption = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            help="Only this gold table (repeatable), with the gold tables it reads and their "
            "sources; default: the whole city"
        ),
    ] = None,
) -> None:
    """Run the pipeline in this process: ingest → standardize → build → quality → publish."""
    from citylake import flow

    logical_date = _date(date)
    sources, tables = flow.city_plan(table)
    steps = len(sources) * 2 + len(tables) * 2 + 1
    with _progress() as progress:
        task = progress.add_task(f"citylake run {logical_date}", total=steps)

        finished = iter(range(steps + 1))

        def advance(name: str) -> None:
            progress.update(task, description=name, completed=next(finished))

        results = flow.run_city(logical_date, progress=advance, tables=table)
        progress.update(task, completed=steps, description="done")
    for result in results:
        console.print_json(json.dumps(result, ensure_ascii=False, default=str))
    from citylake.spark import get_spark

    console.print(f"ran on Spark master {get_spark().conf.get('spark.master')}")


@app.command()
def publish() -> None:
    """Publish the gate-passed gold tables to the serving file."""
    from citylake import flow

    console.print_json(json.dumps(flow.publish(), ensure_ascii=False))


class _RunDisplay:
    """What a waiting user sees: each task as it finishes (state, duration), and one live line
    with the elapsed time, the tasks done, and what is running now."""

    MARKS = {"success": "[green]✓", "skipped": "[dim]–", "failed": "[red]✗"}

    def __init__(self, dag_id: str, day: dt.date):
        self.dag_id, self.day = dag_id, day
        self.started = dt.datetime.now()
        self.reported: set[str] = set()
        self.status = console.status(self._line([]))

    def _line(self, running: list[str]) -> str:
        elapsed = str(dt.datetime.now() - self.started).split(".")[0]
        now = ", ".join(running[:3]) + (f" +{len(running) - 3}" if len(running) > 3 else "")
        return f"{self.dag_id} {self.day}  {elapsed}  {len(self.reported)} done" + (
            f"  运行中 running: {now}" if now else "  waiting for the scheduler"
        )

    def __call__(self, instances: list[dict]) -> None:
        finished = sorted(
            (
                ti
                for ti in instances
                if ti["state"] in ("success", "skipped", "failed", "upstream_failed")
            ),
            key=lambda ti: ti.get("end_date") or "",
        )
        for ti in finished:
            if ti["task_id"] in self.reported:
                continue
            self.reported.add(ti["task_id"])
            seconds = ti.get("duration")
            took = f"{seconds:7.1f} s" if seconds is not None else "        "
            mark = self.MARKS.get(ti["state"], "[red]✗")
            console.print(f"  {mark} {ti['task_id']:<52}[/] {took}  {ti['state']}")
        running = sorted(ti["task_id"] for ti in instances if ti["state"] == "running")
        self.status.update(self._line(running))


@app.command("airflow-run")
def airflow_run(
    dag: Annotated[str, typer.Option(help="DAG id")] = "citylake_city",
    date: DateOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run")] = 3600,
    if_new: Annotated[
        bool,
        typer.Option(
            "--if-new",
            help="Do nothing when the day's run succeeded already and nothing new was delivered",
        ),
    ] = False,
) -> None:
    """Trigger a DAG run through Airflow's REST API and follow it task by task to its end."""
    from citylake import airflow_api

    # Midnight of that day; trigger reads a naive time on the city's clock, the logical date of
    # the scheduled run for that day, so it takes that run instead of adding another.
    logical = dt.datetime.combine(_date(date), dt.time())
    if if_new and airflow_api.last_run_state(dag, logical) == "success":
        from citylake import flow

        waiting = flow.pending(logical.date())
        if not waiting:
            console.print(
                f"[green]nothing new delivered[/] for {logical.date()} (没有新交付): {dag} "
                "ran successfully for it already; the lake and the serving file are current"
            )
            return
        files = sum(len(f) for f in waiting.values())
        console.print(f"{files} new file(s) delivered for {logical.date()}: {', '.join(waiting)}")
    display = _RunDisplay(dag, logical.date())
    with airflow_api.client() as api, display.status:
        run_id = airflow_api.trigger(api, dag, logical)
        state = airflow_api.wait(api, dag, run_id, timeout, poll_s=2.0, on_poll=display)
    elapsed = str(dt.datetime.now() - display.started).split(".")[0]
    colour = "green" if state == "success" else "red"
    console.print(f"{dag} {logical.date()}: [bold {colour}]{state}[/] in {elapsed}")
    if state != "success":
        console.print("the failed tasks and their logs: [bold]citylake status[/]")
        raise typer.Exit(1)


@app.command()
def summary() -> None:
    """What the serving file holds: as-of date, rows per gold table, quarantined rows."""
    import duckdb

    env, _, _ = settings()
    if not env.serving_file.exists():
        err.print(f"no serving file at {env.serving_file} yet: run the pipeline first")
        raise typer.Exit(1)
    with duckdb.connect(str(env.serving_file), read_only=True) as con:
        as_of, published = con.execute("SELECT as_of, published_at FROM serving_info").fetchone()
        tables = con.execute(
            "SELECT table_name, library, gold_version, rows FROM serving_tables ORDER BY 2, 1"
        ).fetchall()
        files, delivered = con.execute(
            "SELECT coalesce(sum(files), 0), coalesce(sum(rows_delivered), 0)"
            " FROM health_deliveries"
        ).fetchone()
        findings = con.execute("SELECT coalesce(sum(rows), 0) FROM health_quarantine").fetchone()[0]
    table = Table(
        "gold table 金库表", "library 基础库", Column("version", justify="right"),
        Column("rows 行数", justify="right"), title=f"serving file as of {as_of} (published {published:%Y-%m-%d %H:%M})",
    )  # fmt: skip
    for name, library, version, rows in tables:
        table.add_row(name, library, str(version), f"{rows:,}")
    console.print(table)
    console.print(
        f"delivered 交付: {files:,} files, {delivered:,} rows; quarantine findings 隔离原因 "
        f"(row × reason): {findings:,} — `citylake report <department>` explains them"
    )


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
    log_lines: Annotated[int, typer.Option(help="Log lines shown per failed task")] = 15,
) -> None:
    """Last run of every DAG, failing tasks with their log tail, overdue sources (Airflow's API)."""
    from citylake.airflow_api import city_status

    summary = city_status(log_lines=log_lines)
    if as_json:
        console.print_json(json.dumps(summary, ensure_ascii=False, default=str))
        return
    table = Table("暂停 paused", "上次运行 last run", "状态 state", "类型 type")
    table.columns.insert(0, Column("DAG", no_wrap=True))
    for dag in summary["dags"]:
        run = dag["last_run"] or {}
        state = run.get("state") or "-"
        colour = {"success": "green", "failed": "red", "running": "yellow"}.get(state, "white")
        table.add_row(
            dag["dag_id"],
            "yes" if dag["is_paused"] else "no",
            str(run.get("logical_date") or run.get("dag_run_id") or "never"),
            f"[{colour}]{state}[/]",
            str(run.get("run_type") or "-"),
        )
    console.print(table)
    for dag in summary["dags"]:
        for ti in dag.get("failed_tasks") or []:
            console.print(
                f"\n[red]✗ {dag['dag_id']}.{ti['task_id']}[/] {ti['state']} (try {ti['try_number']})"
            )
            for line in ti["log_tail"]:
                console.print(f"    {line}", markup=False, highlight=False)
    freshness = summary["freshness"]
    if freshness is None:
        console.print(
            "\n逾期来源 overdue sources: unknown (no freshness check of citylake_city yet)"
        )
    elif not freshness["overdue"]:
        console.print(f"\n逾期来源 overdue sources: none ({freshness['run_id']})")
    else:
        console.print(f"\n[red]逾期来源 overdue sources[/] ({freshness['run_id']}):")
        for source in freshness["overdue"]:
            console.print(
                f"  {source['source_id']} {source.get('department', '')} ({source['frequency']}): "
                f"last delivery {source['last_delivery'] or 'never'}"
            )


@app.command()
def trace(
    key: Annotated[str, typer.Argument(help="公民身份号码 or 统一社会信用代码")],
    as_of: Annotated[
        dt.datetime | None,
        typer.Option(help="Read every table as it stood then (Delta time travel), e.g. 2026-11-27"),
    ] = None,
    clear: Annotated[
        bool, typer.Option(help="Show personal data unmasked (entitled users)")
    ] = False,
) -> None:
    """Where a person's or an entity's facts came from: file, batch, row, in every layer."""
    from citylake.lake import Lake
    from citylake.spark import get_spark
    from pipelines.lineage import trace as find

    env, _, contracts = settings()
    hits = find(Lake(env, get_spark(env)), contracts, key, as_of)
    shown = key if clear else f"{key[:4]}{'*' * (len(key) - 8)}{key[-4:]}"
    when = f" as of {as_of}" if as_of else ""
    table = Table(title=f"溯源 trace {shown}{when}: {len(hits)} rows")
    for name in ("layer.table", "column", "file 文件", "batch 批次", "row 行", "version / reason"):
        table.add_column(name)
    for hit in sorted(
        hits, key=lambda h: (h.layer != "gold", h.layer, h.table, h.delivery_date or dt.date.min)
    ):
        table.add_row(
            f"{hit.layer}.{hit.table}",
            hit.column,
            hit.source_file or "",
            hit.batch_id or "",
            "" if hit.row_number is None else str(hit.row_number),
            hit.version_info,
        )
    console.print(table)
    if not hits:
        raise typer.Exit(1)


@app.command()
def history(
    table: Annotated[str, typer.Argument(help="layer.name, e.g. gold.population__person")],
    limit: int = 20,
) -> None:
    """The Delta history of a table: versions, times, operations, rows written."""
    from zoneinfo import ZoneInfo

    from citylake.config import CITY_TIMEZONE
    from citylake.lake import Lake

    env, _, _ = settings()
    layer, _, name = table.partition(".")
    lake = Lake(env)
    if not lake.exists(layer, name):
        raise CityLakeError(f"{table}: no such Delta table under {env.lake_root}")
    out = Table(title=f"{table} history (read any version with --as-of / versionAsOf)")
    for column in ("version", "timestamp", "operation", "rows written"):
        out.add_column(column)
    for commit in lake.history(layer, name, limit):  # the Delta log itself: no Spark job
        metrics = commit.get("operationMetrics") or {}
        written = metrics.get("numOutputRows") or metrics.get("numTargetRowsInserted") or ""
        when = dt.datetime.fromtimestamp(commit.get("timestamp", 0) / 1000, ZoneInfo(CITY_TIMEZONE))
        out.add_row(
            str(commit["version"]), f"{when:%Y-%m-%d %H:%M:%S}", commit.get("operation", ""),
            str(written),
        )  # fmt: skip
    console.print(out)


@app.command()
def report(
    department: Annotated[str, typer.Argument(help="Department id, e.g. gongan (conf/sources/)")],
    date: DateOption = None,
) -> None:
    """The delivery report of a department's files: accepted, quarantined and why, failed checks."""
    from rich.markdown import Markdown

    from quality.report import write_report

    env, _, contracts = settings()
    text, path = write_report(env, contracts, department, _date(date))
    console.print(Markdown(text))
    console.print(f"written to {path}")


@app.command()
def freshness(date: DateOption = None) -> None:
    """Whether each source delivered within its contract's frequency; exit 1 if any is overdue."""
    from quality.freshness import freshness as standing
    from quality.freshness import last_deliveries

    env, _, contracts = settings()
    on_date = _date(date)
    found = standing(contracts, last_deliveries(env, on_date), on_date)
    table = Table(
        "source_id",
        "部门 department",
        "频率 frequency",
        "最近交付 last delivery",
        "最迟 due by",
        "状态 state",
        title=f"交付及时性 Freshness on {on_date}",
    )
    for f in found:
        state = (
            f"[red]逾期 overdue {f.days_overdue or ''}[/]"
            if f.overdue
            else "[green]按时 on time[/]"
        )
        table.add_row(
            f.source_id,
            f.department_name,
            f.frequency,
            str(f.last_delivery or "从未 never"),
            str(f.due_by or ""),
            state,
        )
    console.print(table)
    if any(f.overdue for f in found):
        raise typer.Exit(1)


@app.command()
def checksums(
    save: Annotated[
        Path | None, typer.Option(help="Write the fingerprints to this JSON file")
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(help="Compare with fingerprints saved earlier; exit 1 on any difference"),
    ] = None,
) -> None:
    """Rows and an order-free digest of every silver, gold and serving table (run-time columns
    left out): two builds of the same deliveries agree table by table."""
    from citylake.lake import Lake, serving_fingerprints

    env, _, _ = settings()
    found = Lake(env).fingerprints()
    if env.serving_file.exists():
        found |= serving_fingerprints(env.serving_file)
    found = {k: list(v) for k, v in found.items()}
    earlier = json.loads(against.read_text(encoding="utf-8")) if against else {}
    table = Table("table 表", "rows 行数", "digest 摘要", title=f"校验和 checksums ({len(found)})")
    if against:
        table.add_column(f"vs {against.name}")
    for name, (rows, digest) in found.items():
        cells = [name, str(rows), digest]
        if against:
            cells.append("[green]=[/]" if earlier.get(name) == [rows, digest] else "[red]≠[/]")
        table.add_row(*cells)
    console.print(table)
    if save:
        save.write_text(json.dumps(found, indent=1, sort_keys=True), encoding="utf-8")
        console.print(f"written to {save}")
    if against:
        differ = sorted(k for k in found.keys() | earlier.keys() if found.get(k) != earlier.get(k))
        if differ:
            err.print(f"[red]{len(differ)} tables differ:[/] {', '.join(differ)}")
            raise typer.Exit(1)
        console.print(f"[green]all {len(found)} tables equal to {against}[/]")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over gold.<table> (and the --layers given)")],
    layers: Annotated[str, typer.Option(help="Schemas to expose, e.g. gold,silver,ops")] = "gold",
) -> None:
    """DuckDB over the lake's Delta tables (delta extension loaded offline), for engineers."""
    from pipelines.publish import main as publish_main

    publish_main(["sql", query, "--layers", layers])


@app.command("open-data")
def open_data() -> None:
    """公共数据开放: write the open-data packages (Frictionless) from what is published."""
    from citylake import flow

    opened = flow.open_data()
    table = Table("package/resource", "rows", Column("cells suppressed (1–4)", justify="right"))
    for name, counts in opened["open_data"].items():
        table.add_row(name, str(counts["rows"]), str(counts["suppressed"]))
    console.print(table)
    console.print(f"packages in {opened['open_data_dir']}")


@app.command("access-log")
def access_log() -> None:
    """留痕: carry the data service's new access-log rows into ops.access_log."""
    from citylake import flow

    carried = flow.carry_access_log()
    console.print(f"{carried['carried']} access(es) carried into ops.access_log")


@app.command("airflow-unpause")
def airflow_unpause(dag: Annotated[str, typer.Argument(help="DAG id")]) -> None:
    """Let the scheduler run a DAG on its schedule (DAGs are paused when first seen)."""
    from citylake import airflow_api

    with airflow_api.client() as api:
        airflow_api.unpause(api, dag)
    console.print(f"{dag}: unpaused")


from citylake.service.commands import serve as _serve  # noqa: E402
from citylake.service.commands import sharing as _sharing  # noqa: E402

app.command("serve")(_serve)
app.add_typer(_sharing, name="sharing")


def main() -> None:
    try:
        app()
    except CityLakeError as exc:
        err.print(f"[red]{type(exc).__name__}:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
