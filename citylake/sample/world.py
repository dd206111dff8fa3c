"""The sample city's entities, held as compact numpy arrays so every extract can refer to them.

Residents, households, market entities, social organisations, parcels, buildings and service
cases are drawn once per (seed, scale, delivery date) from their own seeded generators, so an
extract references only persons and entities that exist, and generating one source alone yields
the same file as generating all of them. Text (names, addresses, numbers) is formatted only for
the rows an extract writes, chunk by chunk.
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import yaml

from citylake.config import City
from citylake.sample import geography, numbers
from citylake.sample import vocabulary as vocab

FIRST_BIRTH_YEAR = 1900
EPOCH = dt.date(1970, 1, 1)

# Relation to the head of household (与户主关系) codes of the people arrays.
HEAD, SPOUSE, CHILD, PARENT = 0, 1, 2, 3
HOUSEHOLD_SIZE_SHARES = (0.17, 0.27, 0.25, 0.17, 0.09, 0.05)  # sizes 1..6


def rng_for(seed: int, *names: str | int) -> np.random.Generator:
    """A generator seeded by the run's seed and stable names (crc32, not the salted hash())."""
    keys = [zlib.crc32(n.encode()) if isinstance(n, str) else n for n in names]
    return np.random.default_rng([seed, *keys])


def days(date: dt.date) -> int:
    return (date - EPOCH).days


def as_dates(day_numbers: np.ndarray) -> np.ndarray:
    return np.asarray(day_numbers, dtype="datetime64[D]")


def pick(
    rng: np.random.Generator, words: tuple, count: int, shares: tuple | None = None
) -> np.ndarray:
    """`count` words drawn from a vocabulary list, as an object array ready to write."""
    return np.asarray(words, dtype=object)[rng.choice(len(words), size=count, p=shares)]


def weighted_sample(rng: np.random.Generator, weights: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` distinct items drawn with probability ∝ weight (Efraimidis–Spirakis)."""
    count = min(count, int((weights > 0).sum()))
    keys = np.log(rng.random(len(weights))) / np.where(weights > 0, weights, np.nan)
    keys = np.nan_to_num(keys, nan=-np.inf)
    return np.sort(np.argpartition(-keys, count - 1)[:count]) if count else np.empty(0, np.int64)


@dataclass(frozen=True)
class CityDetail:
    """Towns and resident shares of each division (citylake/sample/data/<city code>.yaml)."""

    towns: tuple[tuple[str, ...], ...]
    population_shares: np.ndarray

    @classmethod
    def load(cls, city: City) -> CityDetail:
        path = files("citylake.sample").joinpath(f"data/{city.code}.yaml")
        detail = (
            yaml.safe_load(path.read_text(encoding="utf-8"))["divisions"] if path.is_file() else {}
        )
        towns, shares = [], []
        for division in city.divisions:
            entry = detail.get(division.code, {})
            towns.append(tuple(entry.get("towns", ["城关镇", "城东街道", "城西街道"])))
            shares.append(entry.get("population_share", 1.0))
        shares_array = np.array(shares, dtype=float)
        return cls(tuple(towns), shares_array / shares_array.sum())


class People:
    """Residents grouped in households of 1–6 with a head (户主) and relations."""

    def __init__(self, city: City, detail: CityDetail, count: int, seed: int, delivery: dt.date):
        rng = rng_for(seed, "people")
        self.city, self.detail, self.seed = city, detail, seed
        today = days(delivery)

        # Households, each cut to its drawn size; the last may be cut short by `count`.
        sizes = rng.choice(np.arange(1, 7), size=count // 2 + 10, p=HOUSEHOLD_SIZE_SHARES)
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), count) + 1]
        household_count = len(sizes)
        self.household = np.repeat(np.arange(household_count, dtype=np.int32), sizes)[:count]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.household_head = starts
        position = np.arange(count) - starts[self.household]
        size = sizes[self.household]

        has_parents = (rng.random(household_count) < 0.5)[self.household] & (size >= 5)
        spouse_first = (rng.random(household_count) < 0.8)[self.household] | (size >= 3)
        relation = np.full(count, CHILD, dtype=np.uint8)
        relation[position == 0] = HEAD
        relation[(position == 1) & spouse_first] = SPOUSE
        relation[has_parents & (position >= size - 2)] = PARENT
        self.relation = relation

        head_is_male = (rng.random(household_count) < 0.75)[self.household]
        is_male = rng.random(count) < 0.51
        is_male[relation == HEAD] = head_is_male[relation == HEAD]
        is_male[relation == SPOUSE] = ~head_is_male[relation == SPOUSE]
        is_male[relation == PARENT] = (position == size - 2)[relation == PARENT]
        self.is_male = is_male

        head_age = np.where(
            sizes == 1, rng.uniform(20, 90, household_count), rng.uniform(24, 75, household_count)
        )[self.household]
        # Ages outside a bound are redrawn near it, not clipped: a clip would pile thousands onto
        # one birth day, more than the 499 sequence numbers a day has for each sex.
        age = head_age.copy()
        spouse = relation == SPOUSE
        spouse_age = head_age[spouse] + rng.normal(-2, 3, spouse.sum())
        age[spouse] = np.where(spouse_age >= 20, spouse_age, rng.uniform(20, 24, spouse.sum()))
        child = relation == CHILD
        child_age = head_age[child] - rng.uniform(22, 38, child.sum())
        age[child] = np.where(child_age > 0, child_age, rng.uniform(0, 6, child.sum()))
        parent = relation == PARENT
        parent_age = head_age[parent] + rng.uniform(22, 32, parent.sum())
        age[parent] = np.where(parent_age < 99, parent_age, rng.uniform(80, 99, parent.sum()))
        self.birth_day = (today - 1 - np.floor(age * 365.25)).astype(np.int32)

        self.household_division = rng.choice(
            len(city.divisions), size=household_count, p=detail.population_shares
        ).astype(np.uint8)
        self.division = self.household_division[self.household]
        self.household_town = rng.random(household_count)  # scaled to each division's town list
        self.household_road = rng.integers(len(vocab.ROADS), size=household_count)
        self.household_number = rng.integers(1, 300, size=household_count)
        self.household_village = np.where(
            rng.random(household_count) < 0.4,
            rng.integers(len(vocab.VILLAGE_SYLLABLES) ** 2, size=household_count),
            -1,
        )

        # Surnames by rough frequency; children carry the head's surname.
        surname_weights = 1 / (np.arange(len(vocab.SURNAMES)) + 4)
        self.surname = rng.choice(
            len(vocab.SURNAMES), size=count, p=surname_weights / surname_weights.sum()
        ).astype(np.uint16)
        head_index = starts[self.household]
        self.surname[child] = self.surname[head_index[child]]
        self.given = rng.integers(0, 1 << 12, size=(count, 2)).astype(np.int16)
        self.given[rng.random(count) < 0.3, 1] = -1  # a two-character name

        household_ethnicity = rng.choice(
            len(vocab.ETHNICITIES), size=household_count, p=vocab.ETHNICITY_SHARES
        )
        self.ethnicity = household_ethnicity[self.household].astype(np.uint8)
        mixed = rng.random(count) < 0.05
        self.ethnicity[mixed] = rng.choice(
            len(vocab.ETHNICITIES), size=mixed.sum(), p=vocab.ETHNICITY_SHARES
        )

        moved_later = rng.random(count) < 0.25
        self.registered_day = np.minimum(
            np.where(
                moved_later,
                rng.integers(self.birth_day, today),
                self.birth_day + rng.integers(0, 90, count),
            ),
            today - 1,
        ).astype(np.int32)

        birth_year = as_dates(self.birth_day).astype("datetime64[Y]").astype(int) + 1970
        era_codes = numbers.era_code_table(city, FIRST_BIRTH_YEAR, delivery.year)
        self.id_code = era_codes[self.division, birth_year - FIRST_BIRTH_YEAR]
        self.sequence = self._distinct_sequences(rng)

    def __len__(self) -> int:
        return len(self.birth_day)

    def _distinct_sequences(self, rng: np.random.Generator) -> np.ndarray:
        """顺序码 with the sex parity (odd for men), redrawn until every ID number is distinct."""
        code_index = np.unique(self.id_code, return_inverse=True)[1].astype(np.int64)
        sequence = 2 * rng.integers(1, 500, size=len(self)) + self.is_male
        day = self.birth_day - self.birth_day.min()
        for _ in range(200):
            key = (code_index * 100_000 + day) * 1000 + sequence
            order = np.argsort(key, kind="stable")
            repeated = order[1:][key[order][1:] == key[order][:-1]]
            if not len(repeated):
                return sequence.astype(np.uint16)
            sequence[repeated] = (
                2 * rng.integers(1, 500, size=len(repeated)) + self.is_male[repeated]
            )
        raise RuntimeError(
            "more than 499 residents of one sex share a division code and birth day; "
            "the age model piles people onto one day"
        )

    def id_numbers(self, index: np.ndarray) -> np.ndarray:
        return numbers.id_numbers(
            self.id_code[index], as_dates(self.birth_day[index]), self.sequence[index]
        )

    def names(self, index: np.ndarray) -> np.ndarray:
        male, female = np.array(vocab.GIVEN_MALE), np.array(vocab.GIVEN_FEMALE)
        given = self.given[index]
        is_male = self.is_male[index]

        def given_character(column: np.ndarray) -> np.ndarray:
            return np.where(is_male, male[column % len(male)], female[column % len(female)])

        second = np.where(given[:, 1] >= 0, given_character(given[:, 1]), "")
        return np.strings.add(
            np.strings.add(
                np.array(vocab.SURNAMES)[self.surname[index]], given_character(given[:, 0])
            ),
            second,
        ).astype(object)

    def ages(self, index: np.ndarray, on_day: int) -> np.ndarray:
        return (on_day - self.birth_day[index]) / 365.25

    def phones(self, index: np.ndarray) -> np.ndarray:
        """Distinct mobile numbers: an index-keyed bijection, so every extract agrees on a person's."""
        index = np.asarray(index, dtype=np.int64)
        prefix = np.array(vocab.MOBILE_PREFIXES)[
            (index * 7919 + self.seed) % len(vocab.MOBILE_PREFIXES)
        ]
        line = (index * 2_654_435_761 + self.seed * 97) % 10**8
        return np.strings.add(prefix, np.strings.zfill(line.astype("U8"), 8)).astype(object)

    def addresses(self, index: np.ndarray) -> np.ndarray:
        """Each person's household address (members share one; each is formatted once)."""
        households, position = np.unique(self.household[index], return_inverse=True)
        return np.array([self._household_address(h) for h in households], dtype=object)[position]

    def _household_address(self, household: int) -> str:
        division = self.household_division[household]
        towns = self.detail.towns[division]
        town = towns[int(self.household_town[household] * len(towns))]
        place = vocab.ROADS[self.household_road[household]]
        village = self.household_village[household]
        if village >= 0:
            syllables = vocab.VILLAGE_SYLLABLES
            place = f"{syllables[village // len(syllables)]}{syllables[village % len(syllables)]}村"
        return (
            f"{self.city.divisions[division].name}{town}{place}{self.household_number[household]}号"
        )

    def adults(self, on_day: int, youngest: float = 20, oldest: float = 75) -> np.ndarray:
        age = self.ages(np.arange(len(self)), on_day)
        return np.flatnonzero((age >= youngest) & (age <= oldest))


class Organisations:
    """Market entities (市场监管, authority 9) or social organisations (民政, authority 5)."""

    def __init__(
        self,
        city: City,
        detail: CityDetail,
        people: People,
        count: int,
        seed: int,
        delivery: dt.date,
        *,
        authority: str,
    ):
        rng = rng_for(seed, "organisations", authority)
        today = days(delivery)
        if authority == "9":
            kinds = [(label, digit) for label, digit, _ in vocab.MARKET_ENTITY_TYPES]
            shares = np.array([share for *_, share in vocab.MARKET_ENTITY_TYPES])
        else:
            kinds = list(vocab.SOCIAL_ORGANISATION_TYPES)
            shares = np.array([0.45, 0.5, 0.05])
        self.kind_labels = np.array([label for label, _ in kinds], dtype=object)
        self.kind = rng.choice(len(kinds), size=count, p=shares / shares.sum())
        self.division = rng.choice(len(city.divisions), size=count, p=detail.population_shares)
        type_digits = np.array([digit for _, digit in kinds])[self.kind]
        division_codes = np.array(city.division_codes)[self.division]
        self.credit_code = numbers.credit_codes(rng, authority, type_digits, division_codes)
        # More entities were founded recently than long ago.
        age_years = rng.exponential(7, count).clip(0.01, 30)
        self.established_day = (today - 1 - age_years * 365.25).astype(np.int32)
        adults = people.adults(today, 22, 70)
        self.representative = adults[rng.integers(len(adults), size=count)]
        self.name = self._names(rng, city, count)

    def __len__(self) -> int:
        return len(self.kind)

    def _names(self, rng: np.random.Generator, city: City, count: int) -> np.ndarray:
        syllables = np.array(vocab.TRADE_NAME_SYLLABLES, dtype=object)
        trade_name = (
            syllables[rng.integers(len(syllables), size=count)]
            + syllables[rng.integers(len(syllables), size=count)]
        )
        division_names = np.array([d.name for d in city.divisions], dtype=object)[self.division]
        labels = self.kind_labels[self.kind]
        names = np.empty(count, dtype=object)
        for i in range(count):
            label = labels[i]
            if label == "个体工商户":
                names[i] = (
                    f"{division_names[i]}{trade_name[i]}{vocab.SHOP_KINDS[i % len(vocab.SHOP_KINDS)]}"
                )
            elif label == "农民专业合作社":
                kind = vocab.COOPERATIVE_KINDS[i % len(vocab.COOPERATIVE_KINDS)]
                names[i] = f"{division_names[i]}{trade_name[i]}{kind}专业合作社"
            elif label in vocab.SOCIAL_ORGANISATION_SUFFIXES:
                suffixes = vocab.SOCIAL_ORGANISATION_SUFFIXES[label]
                names[i] = f"{city.name}{trade_name[i]}{suffixes[i % len(suffixes)]}"
            else:
                trade = vocab.TRADES[i % len(vocab.TRADES)]
                names[i] = f"{city.name[:2]}{trade_name[i]}{trade}{label}"
        return names


class Parcels:
    """Land parcels: small rectangles, one per grid cell, inside the real district boundaries."""

    def __init__(
        self,
        city: City,
        detail: CityDetail,
        count: int,
        seed: int,
        delivery: dt.date,
        people: People,
        entities: Organisations,
    ):
        rng = rng_for(seed, "parcels")
        codes = tuple(city.division_codes)
        self.division = np.sort(rng.choice(len(codes), size=count, p=detail.population_shares))
        self.x, self.y = np.empty(count), np.empty(count)
        for index in range(len(codes)):
            chosen = self.division == index
            self.x[chosen], self.y[chosen] = geography.distinct_cell_centres(
                rng, codes, index, int(chosen.sum())
            )
        self.half_width = rng.uniform(0.00005, geography.MAX_HALF_SIZE_DEGREES, count)
        self.half_height = rng.uniform(0.00005, geography.MAX_HALF_SIZE_DEGREES, count)
        self.land_use = rng.choice(len(vocab.LAND_USES), size=count, p=vocab.LAND_USE_SHARES)
        self.holder_is_person = (self.land_use == 0) & (rng.random(count) < 0.7) | (
            self.land_use >= 5
        )
        adults = people.adults(days(delivery), 22, 85)
        self.holder = np.where(
            self.holder_is_person,
            adults[rng.integers(len(adults), size=count)],
            rng.integers(len(entities), size=count),
        )
        self.registered_day = (
            days(delivery) - 1 - rng.exponential(8, count).clip(0, 30) * 365.25
        ).astype(np.int32)
        self.cadastral_zone = rng.integers(1, 30, size=count)

    def __len__(self) -> int:
        return len(self.x)

    def ids(self, index: np.ndarray, city: City) -> np.ndarray:
        """宗地代码 (GB/T 13923 layout): division, 地籍区, 地籍子区, feature code, unique number."""
        index = np.asarray(index)
        division = np.array(city.division_codes, dtype=object)[self.division[index]]
        return np.array(
            [
                f"{division[k]}{self.cadastral_zone[i]:03d}{(i // 100_000) % 1000 + 1:03d}"
                f"{'JC' if self.land_use[i] >= 5 else 'GB'}{i % 100_000:05d}"
                for k, i in enumerate(index)
            ],
            dtype=object,
        )


class Buildings:
    """Buildings, each on a parcel (a parcel may carry several, or none)."""

    def __init__(self, parcels: Parcels, count: int, seed: int):
        rng = rng_for(seed, "buildings")
        built_on = np.flatnonzero(parcels.land_use <= 4)  # not on farmland or forest
        self.parcel = np.sort(built_on[rng.integers(len(built_on), size=count)])
        first_of_parcel = np.searchsorted(self.parcel, self.parcel, side="left")
        self.number_on_parcel = np.arange(count) - first_of_parcel + 1

    def __len__(self) -> int:
        return len(self.parcel)


class Cases:
    """Government service cases (办件) of the year before the delivery date."""

    def __init__(
        self, count: int, seed: int, delivery: dt.date, people: People, entities: Organisations
    ):
        rng = rng_for(seed, "cases")
        delivery_second = days(delivery) * 86_400
        accepted_day = rng.integers(1, 366, size=count)
        office_second = rng.integers(8 * 3600 + 1800, 17 * 3600 + 1800, size=count)
        self.accepted_at = np.sort(delivery_second - accepted_day * 86_400 + office_second)
        self.item = rng.integers(len(vocab.SERVICE_ITEMS), size=count)
        statutory = np.array([limit for *_, limit in vocab.SERVICE_ITEMS])[self.item]
        # Working days → calendar days (×7/5); about one case in eight runs past its limit.
        overdue = rng.random(count) < 0.12
        used = np.where(overdue, rng.uniform(1.1, 2.0, count), rng.uniform(0.05, 1.0, count))
        finished_at = self.accepted_at + (used * statutory * 7 / 5 * 86_400).astype(np.int64)
        self.status = rng.choice(4, size=count, p=(0.85, 0.1, 0.03, 0.02))  # see CASE_STATUSES
        unfinished = (self.status == 1) | (finished_at >= delivery_second)
        self.status[unfinished] = 1
        self.finished_at = np.where(unfinished, -1, finished_at)
        self.is_overdue = overdue
        self.applicant_is_person = rng.random(count) < 0.6
        adults = people.adults(days(delivery), 18, 85)
        self.applicant = np.where(
            self.applicant_is_person,
            adults[rng.integers(len(adults), size=count)],
            rng.integers(len(entities), size=count),
        )
        persons = self.applicant_is_person
        self.division = np.empty(count, dtype=np.int64)
        self.division[persons] = people.division[self.applicant[persons]]
        self.division[~persons] = entities.division[self.applicant[~persons]]
        evaluated = (self.finished_at >= 0) & (rng.random(count) < 0.6)
        self.evaluated = np.flatnonzero(evaluated)

    def __len__(self) -> int:
        return len(self.accepted_at)


CASE_STATUSES = ("办结", "在办", "不予受理", "退件")

# Rows of each extract (or entities of the world) in the real city, scale 1.0.
CITY_SIZE = {
    "residents": 2_000_000,
    "market_entities": 200_000,
    "social_organisations": 2_000,
    "parcels": 300_000,
    "buildings": 300_000,
    "cases": 1_000_000,
    "deaths": 14_000,
    "marriages": 15_000,
    "licences": 1_000_000,
    "credit_records": 2_000_000,
    "red_black_entries": 10_000,
    "hotline_tickets": 500_000,
}


class World:
    """Everything the extracts refer to, built lazily so one extract builds only what it needs."""

    def __init__(self, city: City, *, scale: float, seed: int, delivery_date: dt.date):
        self.city, self.scale, self.seed, self.delivery = city, scale, seed, delivery_date
        self.today = days(delivery_date)
        self.detail = CityDetail.load(city)

    def size(self, what: str) -> int:
        return max(int(round(CITY_SIZE[what] * self.scale)), 10)

    @functools.cached_property
    def people(self) -> People:
        return People(self.city, self.detail, self.size("residents"), self.seed, self.delivery)

    @functools.cached_property
    def adults(self) -> np.ndarray:
        """Residents aged 18 to 85: applicants, licence holders, callers, listed persons."""
        return self.people.adults(self.today, 18, 85)

    @functools.cached_property
    def entities(self) -> Organisations:
        return Organisations(
            self.city,
            self.detail,
            self.people,
            self.size("market_entities"),
            self.seed,
            self.delivery,
            authority="9",
        )

    @functools.cached_property
    def social_organisations(self) -> Organisations:
        return Organisations(
            self.city,
            self.detail,
            self.people,
            self.size("social_organisations"),
            self.seed,
            self.delivery,
            authority="5",
        )

    @functools.cached_property
    def parcels(self) -> Parcels:
        return Parcels(
            self.city,
            self.detail,
            self.size("parcels"),
            self.seed,
            self.delivery,
            self.people,
            self.entities,
        )

    @functools.cached_property
    def buildings(self) -> Buildings:
        return Buildings(self.parcels, self.size("buildings"), self.seed)

    @functools.cached_property
    def cases(self) -> Cases:
        return Cases(self.size("cases"), self.seed, self.delivery, self.people, self.entities)

    @functools.cached_property
    def newborns(self) -> np.ndarray:
        """Residents born in the year before the delivery date (the births extract)."""
        return np.flatnonzero(self.people.birth_day >= self.today - 365)

    @functools.cached_property
    def deceased(self) -> np.ndarray:
        """Residents who died this year, mostly the old; the register has not yet struck them off."""
        age = self.people.ages(np.arange(len(self.people)), self.today)
        weights = np.where(age >= 30, np.exp((age - 85) / 9), 0.0)
        return weighted_sample(rng_for(self.seed, "deaths"), weights, self.size("deaths"))

    @functools.cached_property
    def couples(self) -> np.ndarray:
        """(head, spouse) pairs registering a marriage (or divorce) this year."""
        people = self.people
        spouse = np.flatnonzero(people.relation == SPOUSE)
        head = people.household_head[people.household[spouse]]
        age = people.ages(head, self.today)
        young = (age >= 22) & (age <= 45)
        chosen = weighted_sample(
            rng_for(self.seed, "marriages"), young.astype(float), self.size("marriages")
        )
        return np.stack([head[chosen], spouse[chosen]], axis=1)
