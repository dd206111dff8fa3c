"""`citylake serve` and `citylake sharing ...`: the data service from the command line.

The owning department approves an application through the API or here (the big-data bureau's
operator acting for it, recorded as cli:<department>).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from citylake.config import load_consumers, settings

sharing = typer.Typer(
    help="共享申请与审批 applications and grants of the data service.", no_args_is_help=True
)
console = Console()


def _store():
    from citylake.service_state import Store

    env, _, _ = settings()
    return Store.for_environment(env)


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind; default services.host.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port; default services.service_port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes; default service.workers.")] = None,
) -> None:
    """Run the data service (catalogue, data API, ID check, Delta Sharing, open data)."""
    import uvicorn

    from citylake.service import auth

    env, _, contracts = settings()
    store = _store()
    made = auth.ensure_credentials(env, store, load_consumers(contracts=contracts))
    store.dispose()
    folder = env.secrets / "service_clients"
    console.print(
        f"client credentials: {folder}/<department>.json"
        + (f" (made now: {', '.join(made)})" if made else "")
    )
    os.environ["CITYLAKE_SERVICE_WORKERS"] = str(workers or env.service.workers)
    uvicorn.run(
        "citylake.service.app:worker_app",
        factory=True,
        host=host or env.services.host,
        port=port or env.services.service_port,
        workers=workers or env.service.workers,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


@sharing.command("credentials")
def credentials() -> None:
    """Make missing client credentials (mode 600) and list where each consumer's file is."""
    from citylake.service import auth

    env, _, contracts = settings()
    consumers = load_consumers(contracts=contracts)
    made = set(auth.ensure_credentials(env, _store(), consumers))
    table = Table("client_id", "部门 consumer", "服务 services", "credentials file")
    for code, consumer in consumers.items():
        path = auth.credentials_file(env, code)
        table.add_row(
            code,
            consumer.name,
            ", ".join(consumer.services),
            f"{path}{' (new)' if code in made else ''}",
        )
    console.print(table)


@sharing.command("applications")
def applications(
    status: Annotated[
        str | None, typer.Option(help="pending, approved, rejected or revoked")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only those a department decides.")] = None,
) -> None:
    """List applications (申请) with their status."""
    table = Table("id", "申请部门", "资源", "所属部门", "字段", "行范围", "有效期", "状态")
    for a in _store().applications(owner=owner, status=status):
        table.add_row(
            a.id,
            a.consumer,
            a.resource,
            a.owner,
            ", ".join(a.fields),
            str(a.rows or "全部"),
            f"{a.valid_from}–{a.valid_until}",
            a.status,
        )
    console.print(table)


@sharing.command("decide")
def decide(
    application_id: str,
    department: Annotated[str, typer.Option("--as", help="The owning department's code.")],
    approve: Annotated[bool, typer.Option("--approve/--reject")],
    note: Annotated[str, typer.Option(help="审批意见")] = "",
) -> None:
    """审批: approve or reject an application, as the department that owns its resource."""
    from citylake.service_state import ApplicationError

    try:
        decided = _store().decide(application_id, department, approve, f"cli:{department}", note)
    except ApplicationError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(
        f"{decided.id}: {decided.status} ({decided.resource} for {decided.consumer}, "
        f"{decided.valid_from}–{decided.valid_until})"
    )


@sharing.command("revoke")
def revoke(
    application_id: str,
    department: Annotated[str, typer.Option("--as", help="The owning department's code.")],
    note: Annotated[str, typer.Option(help="撤销理由")],
) -> None:
    """Revoke an approved grant before its end."""
    from citylake.service_state import ApplicationError

    try:
        revoked = _store().revoke(application_id, department, f"cli:{department}", note)
    except ApplicationError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"{revoked.id}: {revoked.status}")
