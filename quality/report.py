"""The delivery report (数据交付质量报告): what became of each file a department delivered.

For one department and one delivery date, per file: rows received, accepted and quarantined; the
quarantined rows counted by reason code with the rule's text (quality/reason_codes.yaml, Chinese
and English), the column as its contract describes it (header and English description) and a few
examples, personal data masked; the quality checks that failed on that delivery (bronze) and on
the table it feeds (silver); and whether each source is on time.

Inputs are Delta tables read with DuckDB, so the report needs no Spark session:
ops.ingest_manifest, quarantine.<source_id>, ops.quality_results. The report is Markdown, written
to <data root>/quality/reports/<department>/<date>.md; `citylake report` prints it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from citylake import masking
from citylake.config import Environment, Frequency, SourceContract
from citylake.errors import CityLakeError
from citylake.exports import formula_safe, write_csv
from citylake.lake import reader, scan_of
from citylake.reasons import reason_texts
from quality.freshness import freshness, last_deliveries

EXAMPLES_PER_REASON = 3
SEVERITY_LABELS = {"hard": "阻断 hard", "soft": "警告 soft"}


class ReportError(CityLakeError, ValueError):
    """The report cannot be made (unknown department, nothing ingested yet)."""


@dataclass
class ReasonCount:
    code: str
    column: str
    rule: str
    count: int
    examples: list[tuple[int, str]] = field(default_factory=list)  # (row number, masked value)


@dataclass
class FileReport:
    source_id: str
    source_file: str
    batch_id: str
    received: int
    accepted: int
    quarantined: int
    reasons: list[ReasonCount]


@dataclass
class CheckFailure:
    layer: str
    table: str
    expectation: str
    column: str | None
    severity: str
    unexpected_count: int | None
    unexpected_percent: float | None
    examples: str | None


@dataclass
class DeliveryReport:
    department: str
    department_name: str
    department_name_en: str
    delivery_date: dt.date
    files: list[FileReport]
    failures: list[CheckFailure]
    missing: list[str]  # source ids of the department with no file on that date
    late: list[str]  # overdue source ids (freshness) on that date
    checks_run: int = 0  # bronze and silver checks recorded for that date


def _masked(value, kind: str | None) -> str:
    """A delivered value as a report shows it (citylake.masking: by its column's kind)."""
    return "(空 empty)" if value is None else str(masking.shown(str(value), kind))


def collect(
    env: Environment,
    contracts: dict[str, SourceContract],
    department: str,
    delivery_date: dt.date,
) -> DeliveryReport:
    """Gather the report's figures from the lake."""
    own = [c for c in contracts.values() if c.department == department]
    if not own:
        known = sorted({c.department for c in contracts.values()})
        raise ReportError(f"no department '{department}' in conf/sources/ (one of {known})")
    manifest = scan_of(env, "ops", "ingest_manifest")
    if manifest is None:
        raise ReportError(
            f"nothing ingested yet: {env.table_path('ops', 'ingest_manifest')} is missing"
        )
    by_id = {c.source_id: c for c in own}
    files: list[FileReport] = []
    failures: list[CheckFailure] = []
    checks_run = 0
    with reader() as con:
        deliveries = con.execute(
            f"SELECT source_id, source_file, batch_id, rows_delivered, rows_bronze "
            f"FROM {manifest} WHERE delivery_date = ? AND source_id IN "
            f"({', '.join('?' for _ in by_id)}) ORDER BY source_id, source_file",
            [delivery_date, *by_id],
        ).fetchall()
        for source_id, source_file, batch_id, received, bronze in deliveries:
            files.append(
                _file_report(con, env, by_id[source_id], source_file, batch_id, received, bronze)
            )
        results = scan_of(env, "ops", "quality_results")
        if results is not None:
            failures = _failures(con, results, [*by_id], own, delivery_date)
            checks_run = con.execute(
                f"SELECT count(DISTINCT run_id) FROM {results} WHERE logical_date = ? "
                f"AND table_name IN ({', '.join('?' for _ in by_id)}, "
                f"{', '.join('?' for _ in own)})",
                [delivery_date, *by_id, *[c.silver_table for c in own]],
            ).fetchone()[0]
    delivered = {f.source_id for f in files}
    standing = freshness(by_id, last_deliveries(env, delivery_date), delivery_date)
    return DeliveryReport(
        department=department,
        department_name=own[0].department_name,
        department_name_en=own[0].department_name_en,
        delivery_date=delivery_date,
        files=files,
        failures=failures,
        missing=sorted(set(by_id) - delivered),
        late=[s.source_id for s in standing if s.overdue],
        checks_run=checks_run,
    )


def _file_report(con, env, contract, source_file, batch_id, received, bronze) -> FileReport:
    quarantine = scan_of(env, "quarantine", contract.source_id)
    reasons: list[ReasonCount] = []
    quarantined = 0
    if quarantine is not None:
        scan = f"(SELECT * FROM {quarantine} WHERE _batch_id = ?)"
        quarantined = con.execute(f"SELECT count(*) FROM {scan}", [batch_id]).fetchone()[0]
        counted = con.execute(
            f"SELECT code, count(*) AS n FROM (SELECT unnest(reason_codes) AS code FROM {scan}) "
            "GROUP BY code ORDER BY n DESC, code",
            [batch_id],
        ).fetchall()
        texts = reason_texts()
        columns = {c.name: c for c in contract.columns}
        for code, count in counted:
            column, _, rule = code.partition(".")
            text = texts.get(rule, {"zh": rule, "en": rule})
            shown = columns.get(column)
            value_column = column if shown else "_malformed_line"
            examples = con.execute(
                f'SELECT _row_number, CAST("{value_column}" AS VARCHAR) FROM {scan} '
                "WHERE list_contains(reason_codes, ?) ORDER BY _row_number LIMIT ?",
                [batch_id, code, EXAMPLES_PER_REASON],
            ).fetchall()
            kind = "text" if shown is None else shown.pii  # a whole raw line is personal
            reasons.append(
                ReasonCount(
                    code=code,
                    column=shown.label if shown else "整行 whole row",
                    rule=f"{text['zh']} ({text['en']})",
                    count=count,
                    examples=[(row, _masked(value, kind)) for row, value in examples],
                )
            )
    return FileReport(
        source_id=contract.source_id,
        source_file=source_file,
        batch_id=batch_id,
        received=received,
        accepted=bronze - quarantined,
        quarantined=quarantined,
        reasons=reasons,
    )


def _failures(con, results, source_ids, contracts, delivery_date) -> list[CheckFailure]:
    """Failed expectations of the latest check of each bronze and silver table on that date."""
    tables = [("bronze", s) for s in source_ids] + [
        ("silver", t) for t in sorted({c.silver_table for c in contracts})
    ]
    found = []
    for layer, table in tables:
        rows = con.execute(
            f"""
            WITH runs AS (
                SELECT run_id, max(checked_at) AS last_checked FROM {results}
                WHERE layer = ? AND table_name = ? AND logical_date = ? GROUP BY run_id
            ), latest AS (SELECT run_id FROM runs ORDER BY last_checked DESC LIMIT 1)
            SELECT expectation, column_name, severity, unexpected_count, unexpected_percent,
                   unexpected_examples
            FROM {results} WHERE run_id IN (SELECT run_id FROM latest)
              AND NOT success ORDER BY severity, expectation, column_name
            """,
            [layer, table, delivery_date],
        ).fetchall()
        found += [CheckFailure(layer, table, *row) for row in rows]
    return found


def _cell(text: str) -> str:
    """A value inside a Markdown table cell: one line, no column break, formula-safe (a report
    pasted into a spreadsheet runs nothing)."""
    safe = formula_safe(text) or ""
    return safe.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def render_markdown(report: DeliveryReport, lists: dict[str, str] | None = None) -> str:
    """The report as Markdown: Chinese for the department, English beside it for engineers.
    `lists`: source id → the quarantine CSV beside the report (relative path), linked."""
    lists = lists or {}
    day = report.delivery_date.isoformat()
    lines = [
        f"# 数据交付质量报告 Delivery report — {report.department_name} "
        f"{report.department_name_en} — {day}",
        "",
    ]
    total = [
        sum(getattr(f, k) for f in report.files) for k in ("received", "accepted", "quarantined")
    ]
    lines += [
        f"共收到 {len(report.files)} 个文件，{total[0]} 行：接收 {total[1]} 行，隔离 {total[2]} 行。",
        f"{len(report.files)} file(s), {total[0]} rows received: {total[1]} accepted, "
        f"{total[2]} quarantined.",
        "",
    ]
    if report.missing:
        lines += [
            "**未收到以下数据 Not delivered on this date:** " + ", ".join(report.missing),
            "",
        ]
    if report.late:
        lines += ["**逾期未交付 Overdue (freshness):** " + ", ".join(report.late), ""]
    for file in report.files:
        share = 100.0 * file.quarantined / file.received if file.received else 0.0
        lines += [
            f"## {file.source_id}",
            "",
            f"文件 File: `{file.source_file}` (batch `{file.batch_id}`)",
            "",
            "| 收到 received | 接收 accepted | 隔离 quarantined | 隔离率 share |",
            "|---:|---:|---:|---:|",
            f"| {file.received} | {file.accepted} | {file.quarantined} | {share:.2f}% |",
            "",
        ]
        if file.reasons:
            lines += [
                "### 隔离原因 Quarantine reasons",
                "",
                "| 原因代码 code | 字段 column | 规则 rule | 行数 rows | 示例（行号: 值） examples (row: value) |",
                "|---|---|---|---:|---|",
            ]
            for reason in file.reasons:
                examples = "; ".join(f"{row}: {_cell(value)}" for row, value in reason.examples)
                lines.append(
                    f"| `{reason.code}` | {reason.column} | {reason.rule} | {reason.count} | "
                    f"{examples} |"
                )
            lines.append("")
            if file.source_id in lists:
                lines += [
                    f"隔离行明细（可用表格软件打开）Every quarantined row, for a spreadsheet: "
                    f"[{lists[file.source_id]}]({lists[file.source_id]})",
                    "",
                ]
        else:
            lines += ["没有隔离的行 No row was quarantined.", ""]
    lines += ["## 未通过的质量检查 Quality checks that failed", ""]
    if report.failures:
        lines += [
            "| 表 table | 检查 expectation | 字段 column | 级别 severity | 不符行数 unexpected | 比例 % | 示例 examples |",
            "|---|---|---|---|---:|---:|---|",
        ]
        for f in report.failures:
            percent = f"{f.unexpected_percent:.2f}" if f.unexpected_percent is not None else ""
            count = "" if f.unexpected_count is None else str(f.unexpected_count)
            examples = _cell(f.examples or "")
            lines.append(
                f"| {f.layer}.{f.table} | {f.expectation} | {f.column or ''} | "
                f"{SEVERITY_LABELS.get(f.severity, f.severity)} | {count} | {percent} | {examples} |"
            )
    elif report.checks_run:
        lines.append("全部通过 Every check passed.")
    else:
        lines.append("当日未运行质量检查 No quality check was recorded for this date.")
    lines += [
        "",
        "个人信息已脱敏 Personal data is masked. 交付频率 Delivery frequencies: "
        + ", ".join(f"{f.value} = {f.label}" for f in Frequency),
        "",
    ]
    return "\n".join(lines)


def write_report(
    env: Environment,
    contracts: dict[str, SourceContract],
    department: str,
    delivery_date: dt.date,
) -> tuple[str, Path]:
    """Collect, render and save the report, and beside it the quarantined rows of each source
    as a CSV for a spreadsheet (see write_quarantine_lists); returns (markdown, path)."""
    report = collect(env, contracts, department, delivery_date)
    folder = env.root / "quality" / "reports" / department
    lists = write_quarantine_lists(env, contracts, report, folder / delivery_date.isoformat())
    text = render_markdown(report, {k: str(v.relative_to(folder)) for k, v in lists.items()})
    path = folder / f"{delivery_date.isoformat()}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text, path


def write_quarantine_lists(
    env: Environment,
    contracts: dict[str, SourceContract],
    report: DeliveryReport,
    folder: Path,
) -> dict[str, Path]:
    """Per source with quarantined rows on the report's date, `<folder>/<source_id>.quarantine
    .csv`: one line per quarantined row, so the department can correct its file — the file and
    row number, the reason codes and their rules in Chinese, the row a duplicate lost to, then
    the delivered values under the department's own headers (personal data masked) and the raw
    line of a record that could not be split. Every cell is formula-safe (citylake.exports)."""
    texts = reason_texts()
    batches: dict[str, list[str]] = {}
    for file in report.files:
        if file.quarantined:
            batches.setdefault(file.source_id, []).append(file.batch_id)
    written: dict[str, Path] = {}
    with reader() as con:
        for source_id, batch_ids in batches.items():
            contract = contracts[source_id]
            scan = scan_of(env, "quarantine", source_id)
            present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
            kept = "_kept_row_number" if "_kept_row_number" in present else "NULL"
            values = ", ".join(
                f'CAST("{c.name}" AS VARCHAR)' if c.name in present else "NULL"
                for c in contract.columns
            )
            rows = con.execute(
                f"SELECT _source_file, _row_number, reason_codes, {kept}, {values}, "
                f"_malformed_line FROM {scan} WHERE _batch_id IN "
                f"({', '.join('?' for _ in batch_ids)}) ORDER BY _source_file, _row_number",
                batch_ids,
            ).fetchall()
            # masked column by column, each personal column in one DuckDB query
            delivered_columns = [[r[4 + i] for r in rows] for i in range(len(contract.columns))]
            shown_columns = [
                masking.mask_values(values, column.pii)
                if column.pii
                else [None if v is None else masking.shown(v, None) for v in values]
                for column, values in zip(contract.columns, delivered_columns, strict=True)
            ]
            raws = masking.mask_values([r[-1] for r in rows], "text")

            def lines(rows=rows, shown_columns=shown_columns, raws=raws):
                for n, (source_file, row_number, codes, kept_row, *_) in enumerate(rows):
                    rules = [
                        texts.get(code.partition(".")[2], {}).get("zh", code) for code in codes
                    ]
                    shown = [column[n] for column in shown_columns]
                    yield [source_file, row_number, "; ".join(codes), "; ".join(rules),
                           kept_row, *shown, raws[n]]  # fmt: skip

            header = ["文件 file", "行号 row", "原因代码 reason codes", "原因 reasons",
                      "保留的行 row kept", *(c.header for c in contract.columns),
                      "无法拆分的原始行 raw line"]  # fmt: skip
            path = folder / f"{source_id}.quarantine.csv"
            write_csv(path, header, lines())
            written[source_id] = path
    return written
