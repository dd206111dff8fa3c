"""One row builder per department extract: which rows it has and what each column holds.

A builder takes the world, a seeded generator and the row numbers of one chunk, and returns the
chunk's columns (name → object array of strings, None for empty). Column names are the contract's;
the generator checks that builder and contract agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from citylake.sample import vocabulary as vocab
from citylake.sample.world import (
    CASE_STATUSES,
    SPOUSE,
    World,
    as_dates,
    pick,
)

Chunk = dict[str, np.ndarray]
DAY = 86_400


# ----------------------------------------------------------------------------- formatting


def concat(*parts: np.ndarray | str) -> np.ndarray:
    """Element-wise string concatenation, as an object array."""
    arrays = [p if isinstance(p, str) else np.asarray(p).astype(str) for p in parts]
    return functools.reduce(np.strings.add, arrays).astype(object)


def padded(values: np.ndarray, width: int) -> np.ndarray:
    return np.strings.zfill(np.asarray(values).astype(f"U{width}"), width)


def integers(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(np.int64).astype(str).astype(object)


def decimals(values: np.ndarray, places: int = 2) -> np.ndarray:
    return np.char.mod(f"%.{places}f", np.asarray(values, dtype=float)).astype(object)


def iso_dates(day_numbers: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(as_dates(day_numbers), unit="D").astype(object)


def iso_timestamps(seconds: np.ndarray) -> np.ndarray:
    """'YYYY-MM-DD HH:MM:SS'; a negative second count means 'not yet' and is written empty."""
    seconds = np.asarray(seconds, dtype=np.int64)
    text = np.strings.replace(
        np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s"), "T", " "
    )
    return only_where(seconds >= 0, text)


def only_where(present: np.ndarray, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values).astype(object)
    values[~present] = None
    return values


def division_codes(world: World, division: np.ndarray) -> np.ndarray:
    return np.array(world.city.division_codes, dtype=object)[division]


def division_names(world: World, division: np.ndarray) -> np.ndarray:
    return np.array([d.name for d in world.city.divisions], dtype=object)[division]


def street_addresses(world: World, rng: np.random.Generator, division: np.ndarray) -> np.ndarray:
    """Addresses like 八步区贺街镇人民路12号 in the given divisions."""
    towns = world.detail.towns
    town_pick = rng.random(len(division))
    road = pick(rng, vocab.ROADS, len(division))
    number = rng.integers(1, 400, size=len(division))
    names = division_names(world, division)
    return np.array(
        [
            f"{names[i]}{towns[d][int(town_pick[i] * len(towns[d]))]}{road[i]}{number[i]}号"
            for i, d in enumerate(division)
        ],
        dtype=object,
    )


def in_city(world: World, department: str) -> str:
    return f"{world.city.name}{department}"


RELATION_LABELS = np.array(
    [["户主", "户主"], ["配偶", "配偶"], ["女", "子"], ["母亲", "父亲"]], dtype=object
)


# ----------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class Subjects:
    """A mix of persons and entities referenced by a record (holder, applicant, listed subject)."""

    is_person: np.ndarray
    index: np.ndarray  # person index where is_person, else entity index

    @classmethod
    def draw(
        cls, world: World, rng: np.random.Generator, count: int, person_share: float
    ) -> Subjects:
        adults = world.adults
        is_person = rng.random(count) < person_share
        index = np.where(
            is_person,
            adults[rng.integers(len(adults), size=count)],
            rng.integers(len(world.entities), size=count),
        )
        return cls(is_person, index)

    def columns(self, world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(subject type label, name, credit code or None, ID number or None)."""
        persons, entities = self.is_person, ~self.is_person
        names = np.empty(len(self.index), dtype=object)
        credit = np.full(len(self.index), None, dtype=object)
        ids = np.full(len(self.index), None, dtype=object)
        names[persons] = world.people.names(self.index[persons])
        ids[persons] = world.people.id_numbers(self.index[persons])
        names[entities] = world.entities.name[self.index[entities]]
        credit[entities] = world.entities.credit_code[self.index[entities]]
        kinds = np.where(persons, "自然人", "法人").astype(object)
        return kinds, names, credit, ids

    def division(self, world: World) -> np.ndarray:
        division = np.empty(len(self.index), dtype=np.int64)
        division[self.is_person] = world.people.division[self.index[self.is_person]]
        division[~self.is_person] = world.entities.division[self.index[~self.is_person]]
        return division


# ----------------------------------------------------------------------------- population


def household_register(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    people = world.people
    is_male = people.is_male[rows]
    current = division_codes(world, people.division[rows])
    return {
        "id_number": people.id_numbers(rows).astype(object),
        "name": people.names(rows),
        "sex": np.array(vocab.SEX_LABELS, dtype=object)[is_male.astype(int)],
        "birth_date": iso_dates(people.birth_day[rows]),
        "ethnicity": np.array(vocab.ETHNICITIES, dtype=object)[people.ethnicity[rows]],
        "household_id": concat(current.astype(str), padded(people.household[rows] + 1, 9)),
        "relation_to_head": RELATION_LABELS[people.relation[rows], is_male.astype(int)],
        "division_code": current,
        "address": people.addresses(rows),
        # Children under 16 have no phone of their own.
        "phone": only_where(people.ages(rows, world.today) >= 16, people.phones(rows)),
        "registered_date": iso_dates(people.registered_day[rows]),
    }


def _parent(world: World, child: np.ndarray, *, female: bool) -> np.ndarray:
    """The head or spouse of each child's household of the given sex, or -1 if there is none."""
    people = world.people
    head = people.household_head[people.household[child]]
    spouse = np.minimum(head + 1, len(people) - 1)
    head_fits = people.is_male[head] != female
    spouse_fits = (people.relation[spouse] == SPOUSE) & (people.is_male[spouse] != female)
    return np.where(head_fits, head, np.where(spouse_fits, spouse, -1))


def births(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    people = world.people
    child = world.newborns[rows]
    count = len(child)
    mother = _parent(world, child, female=True)
    # A child whose household has no mother on the register gets one from elsewhere in the city.
    age = people.ages(np.arange(len(people)), world.today)
    women = np.flatnonzero(~people.is_male & (age >= 20) & (age <= 42))
    mother = np.where(mother >= 0, mother, women[rng.integers(len(women), size=count)])
    father = _parent(world, child, female=False)
    has_father = father >= 0
    father_ids = np.full(count, None, dtype=object)
    father_names = np.full(count, None, dtype=object)
    father_ids[has_father] = people.id_numbers(father[has_father])
    father_names[has_father] = people.names(father[has_father])
    division = people.division[child]
    hospital = pick(rng, vocab.HOSPITAL_SUFFIXES, count)
    return {
        "birth_certificate_number": concat("P", world.city.province_code[:2], padded(rows + 1, 8)),
        "child_id_number": people.id_numbers(child).astype(object),
        "child_name": people.names(child),
        "child_sex": np.array(vocab.SEX_LABELS, dtype=object)[people.is_male[child].astype(int)],
        "birth_date": iso_dates(people.birth_day[child]),
        "birth_weight_g": integers(rng.normal(3300, 450, count).clip(1500, 5000)),
        "gestational_weeks": integers(rng.integers(36, 42, count)),
        "hospital": concat(division_names(world, division).astype(str), hospital.astype(str)),
        "mother_name": people.names(mother),
        "mother_id_number": people.id_numbers(mother).astype(object),
        "father_name": father_names,
        "father_id_number": father_ids,
        "division_code": division_codes(world, division),
        "address": people.addresses(child),
        "issued_date": iso_dates(
            np.minimum(people.birth_day[child] + rng.integers(0, 30, count), world.today - 1)
        ),
    }


def deaths(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    people = world.people
    person = world.deceased[rows]
    count = len(person)
    death_day = np.maximum(world.today - rng.integers(1, 366, count), people.birth_day[person])
    institution = np.where(rng.random(count) < 0.6, "人民医院", "卫生院").astype(object)
    division = people.division[person]
    return {
        "death_certificate_number": concat("SW", world.city.code, padded(rows + 1, 7)),
        "id_number": people.id_numbers(person).astype(object),
        "name": people.names(person),
        "sex": np.array(vocab.SEX_LABELS, dtype=object)[people.is_male[person].astype(int)],
        "birth_date": iso_dates(people.birth_day[person]),
        "death_date": iso_dates(death_day),
        "death_cause": pick(rng, vocab.DEATH_CAUSES, count, vocab.DEATH_CAUSE_SHARES),
        "death_place": pick(rng, vocab.DEATH_PLACES, count, vocab.DEATH_PLACE_SHARES),
        "division_code": division_codes(world, division),
        "reporting_institution": concat(
            division_names(world, division).astype(str), institution.astype(str)
        ),
        "reported_date": iso_dates(
            np.minimum(death_day + rng.integers(0, 8, count), world.today - 1)
        ),
    }


def marriages(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    people = world.people
    head, spouse = world.couples[rows, 0], world.couples[rows, 1]
    husband = np.where(people.is_male[head], head, spouse)
    wife = np.where(people.is_male[head], spouse, head)
    count = len(rows)
    is_divorce = rng.random(count) < 0.15
    registered_day = world.today - rng.integers(1, 366, count)
    division = people.division[head]
    codes = division_codes(world, division)
    year = as_dates(registered_day).astype("datetime64[Y]").astype(int) + 1970
    return {
        "certificate_number": concat(
            np.where(is_divorce, "L", "J"), codes.astype(str), "-", year, "-", padded(rows + 1, 6)
        ),
        "registration_type": np.where(is_divorce, "离婚", "结婚").astype(object),
        "husband_name": people.names(husband),
        "husband_id_number": people.id_numbers(husband).astype(object),
        "wife_name": people.names(wife),
        "wife_id_number": people.id_numbers(wife).astype(object),
        "registration_date": iso_dates(registered_day),
        "registry_office": concat(division_names(world, division).astype(str), "民政局婚姻登记处"),
        "division_code": codes,
    }


# ----------------------------------------------------------------------------- legal entities


def business_registry(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    entities, people = world.entities, world.people
    count = len(rows)
    kind = entities.kind[rows]
    labels = entities.kind_labels[kind]
    is_sole_trader = labels == "个体工商户"
    capital = np.where(is_sole_trader, rng.uniform(0.5, 50, count), rng.lognormal(4.5, 1.3, count))
    representative = entities.representative[rows]
    division = entities.division[rows]
    return {
        "credit_code": entities.credit_code[rows].astype(object),
        "entity_name": entities.name[rows],
        "entity_type": labels,
        "legal_representative": people.names(representative),
        "legal_representative_id_number": people.id_numbers(representative).astype(object),
        "registered_capital": decimals(capital, 2),
        "established_date": iso_dates(entities.established_day[rows]),
        "registration_authority": concat(
            division_names(world, division).astype(str), "市场监督管理局"
        ),
        "division_code": division_codes(world, division),
        "address": street_addresses(world, rng, division),
        "business_scope": pick(rng, vocab.BUSINESS_SCOPES, count),
        "status": pick(rng, vocab.MARKET_ENTITY_STATUSES, count, vocab.MARKET_ENTITY_STATUS_SHARES),
        "phone": people.phones(representative),
    }


def social_organisations(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    organisations, people = world.social_organisations, world.people
    count = len(rows)
    representative = organisations.representative[rows]
    division = organisations.division[rows]
    return {
        "credit_code": organisations.credit_code[rows].astype(object),
        "organisation_name": organisations.name[rows],
        "organisation_type": organisations.kind_labels[organisations.kind[rows]],
        "legal_representative": people.names(representative),
        "legal_representative_id_number": people.id_numbers(representative).astype(object),
        "registered_capital": decimals(rng.uniform(3, 500, count), 2),
        "registration_date": iso_dates(organisations.established_day[rows]),
        "supervising_unit": concat(
            world.city.name, pick(rng, vocab.SUPERVISING_UNITS, count).astype(str)
        ),
        "division_code": division_codes(world, division),
        "address": street_addresses(world, rng, division),
        "status": pick(rng, ("正常", "注销", "撤销"), count, (0.94, 0.05, 0.01)),
    }


# ----------------------------------------------------------------------------- spatial


def rectangles(
    x: np.ndarray, y: np.ndarray, half_width: np.ndarray, half_height: np.ndarray
) -> np.ndarray:
    """GeoJSON Polygons (closed rings, counter-clockwise, 6 decimals ≈ 0.1 m)."""
    west, east = np.round(x - half_width, 6).tolist(), np.round(x + half_width, 6).tolist()
    south, north = np.round(y - half_height, 6).tolist(), np.round(y + half_height, 6).tolist()
    return np.array(
        [
            {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
            for w, e, s, n in zip(west, east, south, north, strict=True)
        ],
        dtype=object,
    )


def land_parcels(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    parcels, people, entities = world.parcels, world.people, world.entities
    count = len(rows)
    land_use = parcels.land_use[rows]
    by_person = parcels.holder_is_person[rows]
    holder = parcels.holder[rows]
    right = np.where(
        land_use >= 5,
        3,
        np.where(by_person & (rng.random(count) < 0.5), 1, np.where(rng.random(count) < 0.1, 2, 0)),
    )
    metres_x = 111_320 * np.cos(np.radians(parcels.y[rows]))
    area = (2 * parcels.half_width[rows] * metres_x) * (2 * parcels.half_height[rows] * 110_540)
    names = np.empty(count, dtype=object)
    credit = np.full(count, None, dtype=object)
    ids = np.full(count, None, dtype=object)
    names[by_person] = people.names(holder[by_person])
    ids[by_person] = people.id_numbers(holder[by_person])
    names[~by_person] = entities.name[holder[~by_person]]
    credit[~by_person] = entities.credit_code[holder[~by_person]]
    geometry = rectangles(
        parcels.x[rows], parcels.y[rows], parcels.half_width[rows], parcels.half_height[rows]
    )
    return {
        "parcel_id": parcels.ids(rows, world.city),
        "division_code": division_codes(world, parcels.division[rows]),
        "land_use": np.array(vocab.LAND_USES, dtype=object)[land_use],
        "right_type": np.array(vocab.LAND_RIGHTS, dtype=object)[right],
        "area_m2": decimals(area, 2),
        "holder_name": names,
        "holder_credit_code": credit,
        "holder_id_number": ids,
        "registered_date": iso_dates(parcels.registered_day[rows]),
        "geometry": geometry,
    }


def buildings(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    parcels, building_table = world.parcels, world.buildings
    parcel = building_table.parcel[rows]
    count = len(rows)
    building_use = rng.choice(len(vocab.BUILDING_USES), size=count, p=vocab.BUILDING_USE_SHARES)
    floors = np.where(building_use == 0, rng.integers(1, 33, count), rng.integers(1, 12, count))
    footprint = rng.uniform(80, 1500, count)
    syllables = pick(rng, vocab.TRADE_NAME_SYLLABLES, count).astype(str)
    suffix = np.array(["苑", "商业楼", "办公楼", "厂房", "综合楼", "仓库"])[building_use]
    division = parcels.division[parcel]
    return {
        "building_id": concat(
            parcels.ids(parcel, world.city).astype(str),
            "F",
            padded(building_table.number_on_parcel[rows], 4),
        ),
        "parcel_id": parcels.ids(parcel, world.city),
        "building_name": concat(syllables, building_table.number_on_parcel[rows], "号", suffix),
        "address": street_addresses(world, rng, division),
        "division_code": division_codes(world, division),
        "structure": pick(rng, vocab.BUILDING_STRUCTURES, count),
        "floors_above_ground": integers(floors),
        "floors_below_ground": integers(np.where(floors > 8, rng.integers(0, 3, count), 0)),
        "floor_area_m2": decimals(footprint * floors, 2),
        "building_use": np.array(vocab.BUILDING_USES, dtype=object)[building_use],
        "completion_date": iso_dates(
            parcels.registered_day[parcel]
            + rng.integers(180, 1500, count).clip(
                max=world.today - 1 - parcels.registered_day[parcel]
            )
        ),
        "longitude": decimals(
            parcels.x[parcel] + rng.uniform(-0.8, 0.8, count) * parcels.half_width[parcel], 6
        ),
        "latitude": decimals(
            parcels.y[parcel] + rng.uniform(-0.8, 0.8, count) * parcels.half_height[parcel], 6
        ),
    }


# ----------------------------------------------------------------------------- credit and licences


def credit_records(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    count = len(rows)
    subjects = Subjects.draw(world, rng, count, person_share=0.25)
    kind = rng.integers(len(vocab.CREDIT_RECORD_KINDS), size=count)
    record_type, content, authority = (
        np.array(part, dtype=object)[kind] for part in zip(*vocab.CREDIT_RECORD_KINDS, strict=True)
    )
    decided = world.today - rng.integers(1, 5 * 365, count)
    valid_until = decided + 3 * 365
    subject_type, names, credit, ids = subjects.columns(world)
    return {
        "record_id": concat("XY", world.city.code, padded(rows + 1, 10)),
        "subject_type": subject_type,
        "subject_name": names,
        "credit_code": credit,
        "id_number": ids,
        "record_type": record_type,
        "content": content,
        "decision_authority": concat(world.city.name, authority.astype(str)),
        "decision_date": iso_dates(decided),
        "valid_until": only_where(record_type != "荣誉表彰", iso_dates(valid_until)),
        "division_code": division_codes(world, subjects.division(world)),
    }


def red_black_list(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    count = len(rows)
    kind = rng.integers(len(vocab.RED_BLACK_LISTS), size=count)
    list_type, list_name, authority = (
        np.array(part, dtype=object)[kind] for part in zip(*vocab.RED_BLACK_LISTS, strict=True)
    )
    # Only the court's list of defaulters names natural persons as well as entities.
    subjects = Subjects.draw(world, rng, count, person_share=0.0)
    person_subjects = Subjects.draw(world, rng, count, person_share=1.0)
    use_person = (list_name == "失信被执行人") & (rng.random(count) < 0.5)
    subjects = Subjects(use_person, np.where(use_person, person_subjects.index, subjects.index))
    listed = world.today - rng.integers(1, 3 * 365, count)
    removal = listed + rng.integers(180, 3 * 365, count)
    subject_type, names, credit, ids = subjects.columns(world)
    return {
        "entry_id": concat("MD", world.city.code, padded(rows + 1, 8)),
        "list_type": list_type,
        "list_name": list_name,
        "subject_type": subject_type,
        "subject_name": names,
        "credit_code": credit,
        "id_number": ids,
        "reason": concat("经认定列入", list_name.astype(str)),
        "authority": concat(world.city.name, authority.astype(str)),
        "listed_date": iso_dates(listed),
        "removal_date": only_where(removal < world.today, iso_dates(removal)),
    }


def licences(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    count = len(rows)
    kinds = vocab.LICENCE_KINDS
    for_person = np.array([k[4] for k in kinds])
    kind = np.where(
        rng.random(count) < 0.3,
        rng.choice(np.flatnonzero(for_person), size=count),
        rng.choice(np.flatnonzero(~for_person), size=count),
    )
    persons = Subjects.draw(world, rng, count, person_share=1.0)
    entities = Subjects.draw(world, rng, count, person_share=0.0)
    holder_is_person = for_person[kind]
    holders = Subjects(holder_is_person, np.where(holder_is_person, persons.index, entities.index))
    issued = world.today - (rng.exponential(3, count).clip(0, 15) * 365.25).astype(np.int64) - 1
    years_valid = np.array([k[3] for k in kinds])[kind]
    valid_until = issued + (years_valid * 365.25).astype(np.int64)
    status = np.where(years_valid == 0, 0, np.where(valid_until >= world.today, 0, 1))
    revoked = rng.random(count)
    status = np.where(revoked < 0.02, 2, np.where(revoked < 0.03, 3, status))
    holder_type, names, credit, ids = holders.columns(world)
    division = holders.division(world)
    issue_year = as_dates(issued).astype("datetime64[Y]").astype(int) + 1970
    return {
        "licence_number": concat(
            np.array([k[1] for k in kinds])[kind],
            division_codes(world, division).astype(str),
            issue_year,
            padded(rows + 1, 7),
        ),
        "licence_type": np.array([k[0] for k in kinds], dtype=object)[kind],
        "holder_type": holder_type,
        "holder_name": names,
        "holder_credit_code": credit,
        "holder_id_number": ids,
        "issuing_authority": concat(world.city.name, np.array([k[2] for k in kinds])[kind]),
        "issue_date": iso_dates(issued),
        "valid_until": only_where(years_valid > 0, iso_dates(valid_until)),
        "status": np.array(["有效", "过期", "注销", "吊销"], dtype=object)[status],
        "division_code": division_codes(world, division),
    }


# ----------------------------------------------------------------------------- government services


def case_numbers(world: World, case: np.ndarray) -> np.ndarray:
    """办件编号: division of acceptance, acceptance date, running number."""
    cases = world.cases
    accepted = np.strings.replace(
        np.datetime_as_string((cases.accepted_at[case] // DAY).astype("datetime64[D]"), unit="D"),
        "-",
        "",
    )
    return concat(
        division_codes(world, cases.division[case]).astype(str), accepted, padded(case + 1, 8)
    )


def service_cases(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    cases = world.cases
    count = len(rows)
    item = cases.item[rows]
    department, item_name, statutory = (
        np.array(part, dtype=object)[item] for part in zip(*vocab.SERVICE_ITEMS, strict=True)
    )
    applicants = Subjects(cases.applicant_is_person[rows], cases.applicant[rows])
    applicant_type, names, credit, ids = applicants.columns(world)
    return {
        "case_number": case_numbers(world, rows),
        "department": concat(world.city.name, department.astype(str)),
        "item_code": concat(world.city.code, "-", padded(item + 1, 4)),
        "item_name": item_name,
        "applicant_type": applicant_type,
        "applicant_name": names,
        "applicant_credit_code": credit,
        "applicant_id_number": ids,
        "channel": pick(rng, vocab.SERVICE_CHANNELS, count, vocab.SERVICE_CHANNEL_SHARES),
        "accepted_at": iso_timestamps(cases.accepted_at[rows]),
        "statutory_days": integers(statutory),
        "finished_at": iso_timestamps(cases.finished_at[rows]),
        "status": np.array(CASE_STATUSES, dtype=object)[cases.status[rows]],
        "division_code": division_codes(world, cases.division[rows]),
    }


def hotline_tickets(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    people = world.people
    count = len(rows)
    caller = world.adults[rng.integers(len(world.adults), size=count)]
    category = rng.integers(len(vocab.HOTLINE_CATEGORIES), size=count)
    label, content, department = (
        np.array(part, dtype=object)[category]
        for part in zip(*vocab.HOTLINE_CATEGORIES, strict=True)
    )
    # Rows run in time order through the year; calls cluster in the afternoon.
    day = world.today - 365 + rows * 365 // world.size("hotline_tickets")
    second_of_day = np.clip(rng.normal(14 * 3600, 4 * 3600, count), 0, DAY - 1).astype(np.int64)
    received = day * DAY + second_of_day
    status = rng.choice(len(vocab.HOTLINE_STATUSES), size=count, p=vocab.HOTLINE_STATUS_SHARES)
    closed = received + (rng.exponential(3, count) * DAY).astype(np.int64) + 600
    closed = np.where((status == 0) & (closed < world.today * DAY), closed, -1)
    anonymous = rng.random(count) < 0.1
    division = people.division[caller]
    day_text = np.strings.replace(
        np.datetime_as_string((received // DAY).astype("datetime64[D]"), unit="D"), "-", ""
    )
    return {
        "ticket_number": concat(day_text, padded(rows + 1, 8)),
        "received_at": iso_timestamps(received),
        "channel": pick(rng, vocab.HOTLINE_CHANNELS, count, vocab.HOTLINE_CHANNEL_SHARES),
        "request_kind": pick(rng, vocab.HOTLINE_KINDS, count, vocab.HOTLINE_KIND_SHARES),
        "category": label,
        "content": content,
        "caller_name": only_where(~anonymous, people.names(caller)),
        "caller_phone": people.phones(caller),
        "division_code": division_codes(world, division),
        "address": street_addresses(world, rng, division),
        "assigned_department": concat(world.city.name, department.astype(str)),
        "status": np.array(vocab.HOTLINE_STATUSES, dtype=object)[status],
        "closed_at": iso_timestamps(closed),
    }


def evaluations(world: World, rng: np.random.Generator, rows: np.ndarray) -> Chunk:
    cases = world.cases
    case = cases.evaluated[rows]
    count = len(rows)
    # Cases that ran past their limit draw worse ratings.
    shares_on_time = np.array([0.01, 0.02, 0.05, 0.2, 0.72])
    shares_overdue = np.array([0.06, 0.12, 0.22, 0.3, 0.3])
    u = rng.random(count)
    rating = np.where(
        cases.is_overdue[case],
        np.searchsorted(np.cumsum(shares_overdue), u * shares_overdue.sum()),
        np.searchsorted(np.cumsum(shares_on_time), u * shares_on_time.sum()),
    )
    rating = rating.clip(0, 4)
    evaluated_at = cases.finished_at[case] + rng.integers(60, 3 * DAY, count)
    evaluated_at = np.minimum(evaluated_at, world.today * DAY - 1)
    comment = np.array(vocab.EVALUATION_COMMENTS, dtype=object)[
        rng.integers(len(vocab.EVALUATION_COMMENTS), size=count)
    ]
    by_person = cases.applicant_is_person[case]
    phones = np.full(count, None, dtype=object)
    phones[by_person] = world.people.phones(cases.applicant[case][by_person])
    return {
        "evaluation_id": concat("PJ", world.city.code, padded(rows + 1, 9)),
        "case_number": case_numbers(world, case),
        "evaluated_at": iso_timestamps(evaluated_at),
        "channel": pick(rng, vocab.EVALUATION_CHANNELS, count),
        "rating": np.array(vocab.EVALUATION_RATINGS, dtype=object)[rating],
        "score": integers(rating + 1),
        "comment": only_where(comment != "", comment),
        "evaluator_phone": phones,
    }


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class SourceBuilder:
    row_count: Callable[[World], int]
    build: Callable[[World, np.random.Generator, np.ndarray], Chunk]


BUILDERS: dict[str, SourceBuilder] = {
    "gongan__household_register": SourceBuilder(lambda w: len(w.people), household_register),
    "weijian__births": SourceBuilder(lambda w: len(w.newborns), births),
    "weijian__deaths": SourceBuilder(lambda w: len(w.deceased), deaths),
    "minzheng__marriages": SourceBuilder(lambda w: len(w.couples), marriages),
    "shichang__business_registry": SourceBuilder(lambda w: len(w.entities), business_registry),
    "minzheng__social_organisations": SourceBuilder(
        lambda w: len(w.social_organisations), social_organisations
    ),
    "ziran__land_parcels": SourceBuilder(lambda w: len(w.parcels), land_parcels),
    "zhujian__buildings": SourceBuilder(lambda w: len(w.buildings), buildings),
    "xinyong__credit_records": SourceBuilder(lambda w: w.size("credit_records"), credit_records),
    "xinyong__red_black_list": SourceBuilder(lambda w: w.size("red_black_entries"), red_black_list),
    "shenpi__licences": SourceBuilder(lambda w: w.size("licences"), licences),
    "zhengwu__service_cases": SourceBuilder(lambda w: len(w.cases), service_cases),
    "rexian__hotline_tickets": SourceBuilder(lambda w: w.size("hotline_tickets"), hotline_tickets),
    "zhengwu__evaluations": SourceBuilder(lambda w: len(w.cases.evaluated), evaluations),
}
