"""The gold builders on small silver tables made by the real standardization step.

Each test writes a few department rows as delivered (text), runs them through
pipelines.silver.standardize like a delivery, and checks what the builder makes of them: the
precedence between departments, the resolution across libraries, and the rules that depend on the
as-of date (age, licence status, overdue cases, credit rating).
"""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F
from stdnum.cn import ric, uscc

from base_libraries import credit, legal_entity, licence, population, service
from base_libraries.builds import builder
from base_libraries.inputs import BuildInputs
from citylake import catalogue
from citylake.config import load_city, load_contracts
from pipelines import silver
from pipelines.standardize import division_eras_frame

pytestmark = pytest.mark.spark
AS_OF = dt.date(2026, 11, 27)


def id_number(division: str, birth: str, sequence: int) -> str:
    body = f"{division}{birth}{sequence:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum ignores the 18th character


def credit_code(serial: int, division: str = "451102") -> str:
    body = f"92{division}MA{serial:07d}"[:17]
    return body + uscc.calc_check_digit(body)


@pytest.fixture(scope="module")
def city():
    return load_city()


@pytest.fixture(scope="module")
def make_silver(spark, city):
    contracts = load_contracts()
    eras = division_eras_frame(spark)

    def make(source_id: str, rows: list[dict]):
        contract = contracts[source_id]
        records = [
            (
                *[row.get(c) for c in contract.column_names],
                None,
                f"landing/test/{source_id}.csv",
                f"{source_id}:test",
                dt.datetime(2026, 11, 27, 8),
                AS_OF,
                number,
            )
            for number, row in enumerate(rows, start=1)
        ]
        schema = ", ".join(f"`{c}` string" for c in contract.column_names)
        schema += (
            ", _malformed_line string, _source_file string, _batch_id string,"
            " _ingested_at timestamp, _delivery_date date, _row_number long"
        )
        bronze = spark.createDataFrame(records, schema)
        standardized = silver.standardize(bronze, contract, city, eras, AS_OF)
        rejected = silver.quarantined(standardized).collect()
        assert not rejected, f"test rows of {source_id} were quarantined: {rejected}"
        return silver.accepted(standardized)

    return make


def inputs(spark, city, silver_frames=None, gold=None) -> BuildInputs:
    return BuildInputs(spark, city, AS_OF, silver=silver_frames or {}, gold=gold or {})


# Born before 2002, so their numbers carry the codes of the time (贺州地区 4524xx).
ANNA = id_number("452427", "19800101", 2)  # 女
BO = id_number("452424", "19790505", 11)  # 男, 昭平县 then
CHILD = id_number("451102", "20260301", 21)
ORPHAN_BIRTH = id_number("451103", "20260401", 32)


def register_row(number: str, name: str, household: str, relation: str, **extra) -> dict:
    return {
        "id_number": number,
        "name": name,
        "birth_date": f"{number[6:10]}-{number[10:12]}-{number[12:14]}",
        "household_id": household,
        "relation_to_head": relation,
        "division_code": extra.get("division_code", "451102"),
        "address": "八步区城东街道",
        "registered_date": extra.get("registered_date", "2020-01-01"),
    }


@pytest.fixture(scope="module")
def population_gold(spark, city, make_silver):
    person = make_silver(
        "gongan__household_register",
        [
            register_row(ANNA, "陈安", "H1", "户主"),
            register_row(BO, "王博", "H1", "配偶"),
            register_row(CHILD, "王小", "H1", "子"),
        ],
    )
    births = make_silver(
        "weijian__births",
        [
            # Known to the register: the register's name wins.
            {
                "birth_certificate_number": "P1",
                "child_id_number": CHILD,
                "child_name": "王晓晓",
                "birth_date": "2026-03-01",
                "mother_id_number": ANNA,
                "division_code": "451102",
                "issued_date": "2026-03-10",
            },
            # Not yet in the register: added from the birth registration.
            {
                "birth_certificate_number": "P2",
                "child_id_number": ORPHAN_BIRTH,
                "child_name": "李新",
                "birth_date": "2026-04-01",
                "mother_id_number": ANNA,
                "division_code": "451103",
                "issued_date": "2026-04-12",
            },
        ],
    )
    deaths = make_silver(
        "weijian__deaths",
        [
            {
                "death_certificate_number": "D1",
                "id_number": BO,
                "name": "王博",
                "death_date": "2026-10-01",
                "division_code": "451102",
            }
        ],
    )
    marriages = make_silver(
        "minzheng__marriages",
        [
            {
                "certificate_number": "J1",
                "registration_type": "结婚",
                "husband_name": "王博",
                "husband_id_number": BO,
                "wife_name": "陈安",
                "wife_id_number": ANNA,
                "registration_date": "2005-05-01",
                "division_code": "451102",
            }
        ],
    )
    frames = {
        "person": person,
        "weijian__births": births,
        "weijian__deaths": deaths,
        "minzheng__marriages": marriages,
    }
    person_gold = population.build_person(inputs(spark, city, frames)).cache()
    return person_gold


def test_every_catalogue_table_has_a_builder_and_comes_after_what_it_reads() -> None:
    import inspect

    done = set()
    for table in catalogue.build_order():
        assert set(table.gold) <= done, table.name
        done.add(table.name)
        build = builder(table.name)
        assert build.__name__ == f"build_{table.entity}"
        assert inspect.getmodule(build).__name__ == f"base_libraries.{table.library}"
    assert len(done) == len(list(catalogue.METADATA_DIR.glob("*.yml"))) == 12


def test_person_precedence_deaths_and_marriages(population_gold) -> None:
    assert population_gold.columns == catalogue.gold_table("population__person").column_names
    people = {r["id_number"]: r for r in population_gold.collect()}
    assert set(people) == {ANNA, BO, CHILD, ORPHAN_BIRTH}
    assert people[CHILD]["name"] == "王小" and people[CHILD]["record_source"] == "户籍"
    assert people[ORPHAN_BIRTH]["record_source"] == "出生登记"
    assert people[ORPHAN_BIRTH]["division_name"] == "平桂区"
    assert people[ORPHAN_BIRTH]["household_id"] is None
    assert people[BO]["is_alive"] is False and people[BO]["death_date"] == dt.date(2026, 10, 1)
    assert people[ANNA]["is_alive"] is True
    assert (people[ANNA]["marital_status"], people[ANNA]["spouse_id_number"]) == ("已婚", BO)
    assert people[CHILD]["marital_status"] == "未登记"
    assert people[ANNA]["sex"] == "女" and people[BO]["sex"] == "男"
    assert people[ANNA]["age"] == 46 and people[CHILD]["age"] == 0
    assert people[BO]["birth_division_code"] == "451121"
    assert people[ANNA]["_batch_id"] == "gongan__household_register:test"


def test_household_counts_living_and_deceased(spark, city, population_gold) -> None:
    gold = population.build_household(
        inputs(spark, city, gold={"population__person": population_gold})
    )
    assert gold.columns == catalogue.gold_table("population__household").column_names
    [household] = gold.collect()
    assert household["household_id"] == "H1"
    assert household["head_id_number"] == ANNA and household["head_name"] == "陈安"
    assert (household["members"], household["deceased_members"]) == (2, 1)


def entity_rows() -> tuple[list[dict], list[dict]]:
    market = [
        {
            "credit_code": credit_code(1),
            "entity_name": "八步区甲商店",
            "entity_type": "个体工商户",
            "legal_representative": "陈安",
            "legal_representative_id_number": ANNA,
            "established_date": "2019-01-01",
            "division_code": "451102",
            "status": "存续",
        },
        {
            "credit_code": credit_code(2),
            "entity_name": "八步区乙公司",
            "entity_type": "有限责任公司",
            "legal_representative": "无名",
            "legal_representative_id_number": id_number("452428", "19700101", 5),
            "established_date": "2010-01-01",
            "division_code": "451102",
            "status": "吊销",
        },
    ]
    organisations = [
        {  # the same code as the business registry's first entity: the registry wins
            "credit_code": credit_code(1),
            "organisation_name": "另一个名字",
            "organisation_type": "社会团体",
            "registration_date": "2018-01-01",
            "division_code": "451102",
            "status": "正常",
        },
        {
            "credit_code": credit_code(3),
            "organisation_name": "贺州市丙协会",
            "organisation_type": "社会团体",
            "registration_date": "2015-01-01",
            "division_code": "451121",
            "status": "正常",
        },
    ]
    return market, organisations


@pytest.fixture(scope="module")
def entity_gold(spark, city, make_silver, population_gold):
    market, organisations = entity_rows()
    frames = {
        "shichang__business_registry": make_silver("shichang__business_registry", market),
        "minzheng__social_organisations": make_silver(
            "minzheng__social_organisations", organisations
        ),
    }
    gold = {"population__person": population_gold}
    return legal_entity.build_entity(inputs(spark, city, frames, gold)).cache()


def test_entity_precedence_and_representative_resolution(entity_gold) -> None:
    assert entity_gold.columns == catalogue.gold_table("legal_entity__entity").column_names
    rows = {r["credit_code"]: r for r in entity_gold.collect()}
    assert len(rows) == 3
    first = rows[credit_code(1)]
    assert (first["entity_name"], first["entity_category"]) == ("八步区甲商店", "市场主体")
    assert first["legal_representative_resolved"] is True
    assert first["registration_authority_kind"] == "市场监管"
    second = rows[credit_code(2)]
    assert second["legal_representative_resolved"] is False and second["is_active"] is False
    assert rows[credit_code(3)]["entity_category"] == "社会组织"
    assert rows[credit_code(3)]["division_name"] == "昭平县"


def test_credit_records_and_the_rating_rule(spark, city, make_silver, entity_gold, population_gold):
    records = make_silver(
        "xinyong__credit_records",
        [
            {
                "record_id": "R1",
                "subject_type": "法人",
                "subject_name": "八步区乙公司",
                "credit_code": credit_code(2),
                "record_type": "行政处罚",
                "decision_date": "2026-01-01",
                "valid_until": "2027-01-01",
            },
            {
                "record_id": "R2",
                "subject_type": "法人",
                "subject_name": "八步区甲商店",
                "credit_code": credit_code(1),
                "record_type": "行政处罚",
                "decision_date": "2020-01-01",
                "valid_until": "2021-01-01",  # expired: no longer counts
            },
            {
                "record_id": "R3",
                "subject_type": "自然人",
                "subject_name": "陈安",
                "id_number": ANNA,
                "record_type": "荣誉表彰",
                "decision_date": "2026-01-01",
            },
            {
                "record_id": "R4",
                "subject_type": "法人",
                "subject_name": "外地公司",
                "credit_code": credit_code(9, "450100"),
                "record_type": "纳税信用",
                "decision_date": "2026-01-01",
            },
        ],
    )
    gold = {"legal_entity__entity": entity_gold, "population__person": population_gold}
    record_gold = credit.build_record(
        inputs(spark, city, {"xinyong__credit_records": records}, gold)
    ).cache()
    assert record_gold.columns == catalogue.gold_table("credit__record").column_names
    resolved = {r["record_id"]: r["subject_resolved"] for r in record_gold.collect()}
    assert resolved == {"R1": True, "R2": True, "R3": True, "R4": False}

    lists = make_silver(
        "xinyong__red_black_list",
        [
            {
                "entry_id": "L1",
                "list_type": "红名单",
                "list_name": "守合同重信用企业",
                "subject_type": "法人",
                "subject_name": "八步区甲商店",
                "credit_code": credit_code(1),
                "listed_date": "2025-01-01",
            },
            {
                "entry_id": "L2",
                "list_type": "黑名单",
                "list_name": "严重违法失信企业",
                "subject_type": "法人",
                "subject_name": "贺州市丙协会",
                "credit_code": credit_code(3),
                "listed_date": "2025-01-01",
                "removal_date": "2026-01-01",  # removed before the as-of date
            },
        ],
    )
    profile = credit.build_entity_profile(
        inputs(
            spark,
            city,
            {"xinyong__red_black_list": lists},
            {"legal_entity__entity": entity_gold, "credit__record": record_gold},
        )
    )
    assert profile.columns == catalogue.gold_table("credit__entity_profile").column_names
    ratings = {r["credit_code"]: (r["rating"], r["negative_records"]) for r in profile.collect()}
    assert ratings == {credit_code(1): ("A", 0), credit_code(2): ("C", 1), credit_code(3): ("B", 0)}


def test_licence_status_as_of_the_logical_date(
    spark, city, make_silver, entity_gold, population_gold
):
    def row(number: str, valid_until: str | None, status: str = "有效") -> dict:
        return {
            "licence_number": number,
            "licence_type": "食品经营许可证",
            "holder_type": "法人",
            "holder_name": "八步区甲商店",
            "holder_credit_code": credit_code(1),
            "issue_date": "2022-01-01",
            "valid_until": valid_until,
            "status": status,
        }

    frame = make_silver(
        "shenpi__licences",
        [
            row("A", "2027-06-01"),
            row("B", "2026-12-27"),  # 30 days after the as-of date: expiring
            row("C", "2026-12-28"),  # 31 days: still plainly valid
            row("D", "2026-11-26"),
            row("E", "2027-06-01", "吊销"),
            row("F", None),  # 长期
        ],
    )
    gold = {"legal_entity__entity": entity_gold, "population__person": population_gold}
    built = licence.build_licence(inputs(spark, city, {"shenpi__licences": frame}, gold))
    assert built.columns == catalogue.gold_table("licence__licence").column_names
    statuses = {r["licence_number"]: r["status"] for r in built.collect()}
    assert statuses == {
        "A": "有效",
        "B": "即将到期",
        "C": "有效",
        "D": "已过期",
        "E": "已注销",
        "F": "有效",
    }
    assert built.where(~F.col("holder_resolved")).count() == 0


def test_cases_overdue_and_evaluations(spark, city, make_silver) -> None:
    def case(number: str, accepted: str, finished: str | None, days: int) -> dict:
        return {
            "case_number": number,
            "department": "公安局",
            "item_name": "户口迁移登记",
            "accepted_at": accepted,
            "statutory_days": str(days),
            "finished_at": finished,
            "status": "办结" if finished else "在办",
            "division_code": "451102",
        }

    cases = make_silver(
        "zhengwu__service_cases",
        [
            case("C1", "2026-11-01 09:00:00", "2026-11-03 09:00:00", 3),  # on time
            case("C2", "2026-11-01 09:00:00", "2026-11-05 09:00:00", 3),  # late
            case("C3", "2026-11-20 09:00:00", None, 3),  # open past its deadline
            case("C4", "2026-11-26 09:00:00", None, 20),  # open, within its time
        ],
    )
    built = service.build_case(inputs(spark, city, {"zhengwu__service_cases": cases})).cache()
    assert built.columns == catalogue.gold_table("service__case").column_names
    rows = {r["case_number"]: r for r in built.collect()}
    assert {k: r["is_overdue"] for k, r in rows.items()} == {
        "C1": False,
        "C2": True,
        "C3": True,
        "C4": False,
    }
    assert rows["C1"]["handling_hours"] == 48.0
    assert all(r["handling_hours"] >= 0 for r in rows.values())

    evaluations = make_silver(
        "zhengwu__evaluations",
        [
            {
                "evaluation_id": "E1",
                "case_number": "C1",
                "evaluated_at": "2026-11-04 10:00:00",
                "rating": "满意",
            },
            {
                "evaluation_id": "E2",
                "case_number": "C9",
                "evaluated_at": "2026-11-04 10:00:00",
                "rating": "不满意",
                "score": "2",
            },
        ],
    )
    judged = service.build_evaluation(
        inputs(spark, city, {"zhengwu__evaluations": evaluations}, {"service__case": built})
    )
    assert judged.columns == catalogue.gold_table("service__evaluation").column_names
    rows = {r["evaluation_id"]: r for r in judged.collect()}
    assert (rows["E1"]["score"], rows["E1"]["is_satisfied"], rows["E1"]["department"]) == (
        4,
        True,
        "公安局",
    )
    assert (rows["E2"]["case_resolved"], rows["E2"]["is_satisfied"]) == (False, False)
