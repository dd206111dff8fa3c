"""The service's state: grants held in memory follow decisions made by any other process."""

from __future__ import annotations

import datetime as dt

from citylake.service_state import Store

DAY = dt.date(2026, 6, 1)


def _apply(store: Store, until: dt.date = dt.date(2026, 6, 30)) -> str:
    return store.submit(
        "renshe", "population__person", "gongan", "社保待遇资格认证", "《社会保险法》第七十二条",
        ["id_number", "name"], [], {"division_code": ["451121"]}, dt.date(2026, 5, 1), until,
    ).id  # fmt: skip


def test_grants_in_memory_follow_another_process_decisions_at_once(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    server, cli = Store(url), Store(url)  # two processes' engines on one state database
    first = _apply(cli)
    assert server.grants("renshe", "population__person", DAY) == []
    cli.decide(first, "gongan", approve=True, decided_by="gongan")
    held = server.grants("renshe", "population__person", DAY)
    assert [g.id for g in held] == [first] and held[0].rows == {"division_code": ["451121"]}
    assert server.grants("renshe", None, DAY) == held
    assert server.grants("yibao", None, DAY) == []
    assert server.grants("renshe", "legal_entity__entity", DAY) == []

    second = _apply(cli)
    cli.decide(second, "gongan", approve=False, decided_by="gongan")  # rejected: not a grant
    assert [g.id for g in server.grants("renshe", None, DAY)] == [first]

    cli.revoke(first, "gongan", decided_by="gongan", note="核验任务结束")
    assert server.grants("renshe", None, DAY) == []


def test_a_grant_ends_with_its_last_day_without_any_decision(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'service.db'}")
    grant = _apply(store, until=DAY)
    store.decide(grant, "gongan", approve=True, decided_by="gongan")
    assert [g.id for g in store.grants("renshe", None, DAY)] == [grant]
    assert store.grants("renshe", None, DAY + dt.timedelta(days=1)) == []
    assert store.grants("renshe", None, dt.date(2026, 4, 30)) == []  # not yet begun
