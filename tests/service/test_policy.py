"""Who may read what, decided from the catalogue alone: every gold table's fields by class."""

from __future__ import annotations

import datetime as dt

import pytest

from citylake.catalogue import GOLD_TABLES
from citylake.config import load_consumers, load_contracts
from citylake.service.resources import (
    NEVER,
    UNCONDITIONAL,
    Denied,
    access,
    check_application,
    resources,
)
from citylake.service_state import Application

CONTRACTS = load_contracts()
CONSUMERS = load_consumers(contracts=CONTRACTS)
RESOURCES = resources(CONTRACTS, CONSUMERS)
TODAY = dt.date(2026, 12, 3)


def _grant(resource: str, fields: list[str], consumer: str = "renshe", clear=(), rows=None):
    return Application(
        id="g-1",
        consumer=consumer,
        resource=resource,
        owner=RESOURCES[resource].owner.code,
        purpose="test purpose",
        legal_basis="test basis",
        fields=tuple(fields),
        clear_fields=tuple(clear),
        rows=rows or {},
        valid_from=TODAY,
        valid_until=TODAY,
        status="approved",
        submitted_at=dt.datetime.now(dt.UTC),
        decided_by="x",
        decided_at=None,
        decision_note=None,
    )


def test_every_resource_has_an_owner_that_is_a_consumer_and_a_frequency() -> None:
    assert sorted(RESOURCES) == sorted(t.name for t in GOLD_TABLES)
    for resource in RESOURCES.values():
        assert resource.owner.code in CONSUMERS
        assert resource.frequency.value in ("daily", "weekly", "monthly")
    assert RESOURCES["population__person"].owner.code == "gongan"
    assert RESOURCES["spatial__division"].owner.code == "minzheng"  # named in its metadata


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_never_shared_fields_are_refused_to_everyone_with_or_without_a_grant(name) -> None:
    resource = RESOURCES[name]
    for field in resource.fields(NEVER):
        for consumer in CONSUMERS.values():
            with pytest.raises(Denied) as refused:
                access(resource, consumer, [_grant(name, [field])], None, [field])
            assert refused.value.code == "not_shareable"
        with pytest.raises(Denied):
            check_application(resource, [field], [], {}, TODAY, TODAY)


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_without_a_grant_only_unconditional_fields_and_only_with_an_unconditional_key(name) -> None:
    resource = RESOURCES[name]
    consumer = CONSUMERS["jiaoyu"]
    if set(resource.table.key) <= set(resource.fields(UNCONDITIONAL)):
        found = access(resource, consumer, [], None, None)
        assert set(found.fields) == set(resource.fields(UNCONDITIONAL))
        assert found.masked() == []  # personal fields are never unconditional
    else:
        with pytest.raises(Denied) as refused:
            access(resource, consumer, [], None, None)
        assert refused.value.code == "grant_required"


def test_a_grant_reads_its_fields_masks_personal_ones_unless_in_clear() -> None:
    grant = _grant(
        "population__person",
        ["id_number", "name", "phone"],
        clear=["id_number"],
        rows={"division_code": ["451121"]},
    )
    found = access(RESOURCES["population__person"], CONSUMERS["renshe"], [grant], None, None)
    assert found.fields == ("id_number", "name", "phone")
    assert found.masked() == ["name", "phone"]
    sql, values = found.row_condition()
    assert values == ["451121"] and "?" in sql and "451121" not in sql
    with pytest.raises(Denied) as refused:
        access(RESOURCES["population__person"], CONSUMERS["renshe"], [grant], None, ["address"])
    assert refused.value.code == "grant_required"
    with pytest.raises(Denied) as other:
        access(RESOURCES["population__person"], CONSUMERS["yibao"], [], "g-1", None)
    assert other.value.code == "grant_not_valid"


def test_applications_ask_only_for_what_a_grant_can_give() -> None:
    person = RESOURCES["population__person"]
    cases = {
        "no_fields": ([], [], {}),
        "unknown_field": (["id_number", "nope"], [], {}),
        "clear_outside_fields": (["name"], ["id_number"], {}),
        "clear_not_personal": (["sex"], ["sex"], {}),
        "empty_rows": (["name"], [], {"division_code": []}),
    }
    for code, (fields, clear, rows) in cases.items():
        with pytest.raises(Denied) as refused:
            check_application(person, fields, clear, rows, TODAY, TODAY)
        assert refused.value.code == code
    with pytest.raises(Denied) as period:
        check_application(person, ["name"], [], {}, TODAY, TODAY - dt.timedelta(days=1))
    assert period.value.code == "bad_period"
    with pytest.raises(Denied) as long:
        check_application(person, ["name"], [], {}, TODAY, TODAY + dt.timedelta(days=400))
    assert long.value.code == "bad_period"
    check_application(
        person,
        ["id_number", "name"],
        ["name"],
        {"division_code": ["451102"]},
        TODAY,
        TODAY + dt.timedelta(days=30),
    )


def test_every_department_that_delivers_is_a_consumer_that_can_approve() -> None:
    assert {c.department for c in CONTRACTS.values()} <= set(CONSUMERS)
    assert {"renshe", "yibao", "jiaoyu"} <= set(CONSUMERS)
