"""The data service (数据共享交换服务): one FastAPI application, `citylake serve`.

    /                       首页 home: what the service offers, in Chinese
    /catalogue              政务信息资源目录 the sharing catalogue, searchable (HTML; JSON at /api/v1/catalogue)
    /open-data              公共数据开放 open data packages (Frictionless), public
    /oauth/token            client credentials → a short-lived bearer token
    /api/v1/resources/...   rows of a resource by key or by filters, per class and grant
    /api/v1/applications    申请 and 审批 of conditional resources
    /api/v1/verify          身份证实时核验
    /delta-sharing/...      库表共享 over the open Delta Sharing protocol
    /docs                   OpenAPI, in Chinese and English

Every request is recorded before its answer leaves (citylake.service.audit).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import swagger_ui
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from citylake.catalogue import GOLD_TABLES, LIBRARY_TITLES
from citylake.config import (
    CITY_TIMEZONE,
    City,
    Consumer,
    Environment,
    SourceContract,
    load_consumers,
    settings,
)
from citylake.service import auth, data, open_data_pages
from citylake.service.audit import AuditMiddleware, Limits
from citylake.service.resources import (
    Denied,
    Resource,
    access,
    check_application,
    resources,
)
from citylake.service_state import Application, ApplicationError, NoSuchApplication, Store

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
STATIC = Path(__file__).resolve().parent / "static"
SWAGGER_UI = Path(swagger_ui.__file__).resolve().parent / "static"
RESERVED_PARAMS = {"fields", "cursor", "limit", "grant"}
PERSON_RESOURCE = "population__person"


# ----------------------------------------------------------------------------- models (OpenAPI)


class Error(BaseModel):
    errorCode: str = Field(description="错误代码 error code")
    message: str = Field(description="说明（中文 English）")


class TokenAnswer(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="有效秒数 seconds the token lives")


class RowsPage(BaseModel):
    resource: str
    grant: str | None = Field(description="本次依据的授权 the grant this read is under")
    fields: list[str]
    masked: list[str] = Field(description="脱敏返回的个人信息字段 personal fields returned masked")
    rows: list[dict[str, Any]]
    next_cursor: str | None = Field(description="下一页游标 cursor of the next page, or null")


class OneRow(BaseModel):
    resource: str
    grant: str | None
    fields: list[str]
    masked: list[str]
    row: dict[str, Any]


class ApplicationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resource: str = Field(description="资源名 resource, e.g. population__person", max_length=64)
    purpose: str = Field(min_length=4, max_length=500, description="用途 purpose")
    legal_basis: str = Field(min_length=4, max_length=500, description="依据 legal basis")
    fields: list[str] = Field(min_length=1, max_length=100, description="申请字段 fields")
    clear_fields: list[str] = Field(
        default=[], max_length=100, description="须明文的个人信息字段 personal fields in clear"
    )
    rows: dict[str, list[str]] = Field(
        default={}, description='行范围 rows, e.g. {"division_code": ["451121"]}'
    )
    valid_from: dt.date
    valid_until: dt.date


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool = Field(description="批准 true / 驳回 false")
    note: str = Field(default="", max_length=500, description="审批意见 note")


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_number: str = Field(max_length=64, description="公民身份号码 ID number")
    name: str = Field(max_length=64, description="姓名 name")


class VerifyOut(BaseModel):
    result: str = Field(description="一致 / 不一致 / 查无此人 / 号码无效")
    code: str = Field(description="match / mismatch / not_found / invalid_number")
    deceased: bool | None = Field(
        default=None, description="一致时：是否已登记死亡 (only on a match)"
    )


# A resource's name, its catalogue's names listed in the OpenAPI (any other is a 404).
ResourceName = Annotated[
    str,
    PathParam(
        max_length=64,
        description="资源名 resource (see /api/v1/catalogue)",
        json_schema_extra={"enum": [t.name for t in GOLD_TABLES]},
    ),
]
ERRORS = {s: {"model": Error} for s in (401, 403, 404, 409, 422, 429, 503)}


# ----------------------------------------------------------------------------- the application


@dataclass
class Service:
    env: Environment
    city: City
    contracts: dict[str, SourceContract]
    consumers: dict[str, Consumer]
    store: Store
    resources: dict[str, Resource]
    published: data.Published
    limits: Limits
    key: bytes

    def today(self) -> dt.date:
        from zoneinfo import ZoneInfo

        return dt.datetime.now(ZoneInfo(CITY_TIMEZONE)).date()

    def grants(self, consumer: str, resource: str | None) -> list:
        """The consumer's valid grants today, for one resource or (None) all, from the state on
        every request: another server process or the CLI may have decided a moment ago."""
        return self.store.grants(consumer, resource, self.today())

    def resource(self, name: str) -> Resource:
        found = self.resources.get(name)
        if found is None:
            raise Denied(404, "unknown_resource", f"目录中没有资源 {name} (no such resource)")
        return found


def create_app(
    env: Environment | None = None,
    city: City | None = None,
    contracts: dict[str, SourceContract] | None = None,
    store: Store | None = None,
) -> FastAPI:
    if env is None or city is None or contracts is None:
        env, city, contracts = settings()
    consumers = load_consumers(contracts=contracts)
    store = store or Store.for_environment(env)
    service = Service(
        env,
        city,
        contracts,
        consumers,
        store,
        resources(contracts, consumers),
        data.Published(env),
        Limits(env.service, store),
        auth.signing_key(env),
    )
    app = FastAPI(
        title=f"{city.name}数据共享交换服务 CityLake data service ({city.name_en})",
        description=(
            "政务信息资源目录、按类共享（无条件共享 / 有条件共享 / 不予共享）、申请与审批、"
            "身份证实时核验、库表共享（Delta Sharing）与公共数据开放。每次访问均留痕。\n\n"
            "The sharing catalogue, access by class with applications and approvals, real-time "
            "ID verification, bulk exchange over Delta Sharing and open public data. Every "
            "access is recorded. Tokens: POST /oauth/token with your client credentials."
        ),
        version="1.0",
        docs_url=None,  # /docs below: Swagger UI served from here, not from a CDN
        redoc_url=None,
    )
    app.mount("/static/swagger", StaticFiles(directory=SWAGGER_UI), name="swagger")
    app.mount("/static/service", StaticFiles(directory=STATIC), name="static")
    app.state.service = service
    app.add_middleware(AuditMiddleware, store=store)

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied):
        request.state.audit["reason"] = exc.code
        headers = {}
        if getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(
            {"errorCode": exc.code, "message": exc.message}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        request.state.audit.setdefault("reason", str(exc.detail))
        return JSONResponse(
            {"errorCode": "http_error", "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        request.state.audit["reason"] = "invalid_request"
        return JSONResponse(
            {
                "errorCode": "invalid_request",
                "message": f"请求不合规 (invalid request): {problems}"[:2000],
            },
            status_code=422,
        )

    _pages(app, service)
    _token_route(app, service)
    _data_routes(app, service)
    from citylake.service import sharing

    sharing.routes(app, service, current_consumer)
    open_data_pages.routes(app, service)
    return app


def worker_app() -> FastAPI:
    """One server process's application (`citylake serve` starts service.workers of them)."""
    app = create_app()
    service: Service = app.state.service
    with contextlib.suppress(Denied):  # nothing published yet: loaded on the first check
        service.published.register(PERSON_RESOURCE)
    # What start-up loaded (catalogue, contracts, libraries) lives as long as the process: keep
    # it out of the cyclic collector's scans, which otherwise cost a request much of its time.
    gc.collect()
    gc.freeze()
    return app


# ----------------------------------------------------------------------------- who is asking


async def current_consumer(request: Request) -> Consumer:
    """The consumer of the bearer token, counted against its limits; 401 or 429 otherwise."""
    service: Service = request.app.state.service
    header = request.headers.get("authorization", "")
    scheme, _, bearer = header.partition(" ")
    if scheme.lower() != "bearer" or not bearer:
        request.state.audit["reason"] = "no_token"
        raise HTTPException(
            401, "需要访问令牌 (a bearer token is required)", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        token = auth.read_token(service.key, bearer.strip(), service.consumers)
    except auth.AuthError as exc:
        request.state.audit["reason"] = str(exc)
        raise HTTPException(
            401,
            f"令牌无效或已过期 ({exc})",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from exc
    request.state.audit |= {"consumer": token.consumer, "token_id": token.token_id}
    if service.limits.needs_count(token.consumer):  # once a day: today's count from the log
        await anyio.to_thread.run_sync(service.limits.count_today, token.consumer)
    service.limits.take(token.consumer)
    return service.consumers[token.consumer]


ConsumerDep = Annotated[Consumer, Depends(current_consumer)]


def _token_route(app: FastAPI, service: Service) -> None:
    @app.post(
        "/oauth/token",
        response_model=TokenAnswer,
        responses=ERRORS,
        tags=["认证 auth"],
        summary="换取访问令牌 Buy an access token (OAuth2 client credentials)",
    )
    def token(
        request: Request,
        grant_type: Annotated[str, Form(max_length=64)],
        client_id: Annotated[str | None, Form(max_length=64)] = None,
        client_secret: Annotated[str | None, Form(max_length=256)] = None,
    ) -> TokenAnswer:
        request.state.audit["service"] = "auth"
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):  # RFC 6749 §2.3.1: credentials in Basic auth
            try:
                decoded = base64.b64decode(header[6:]).decode()
                client_id, _, client_secret = decoded.partition(":")
            except ValueError:
                pass
        request.state.audit["consumer"] = client_id if client_id in service.consumers else None
        if grant_type != "client_credentials":
            raise Denied(
                422, "unsupported_grant_type", "仅支持 client_credentials (only client_credentials)"
            )
        try:
            bearer, issued = auth.issue_token(
                service.env,
                service.store,
                service.consumers,
                client_id or "",
                client_secret or "",
            )
        except auth.AuthError as exc:
            request.state.audit["reason"] = "invalid_client"
            raise HTTPException(
                401,
                "客户端凭据无效 (invalid client credentials)",
                headers={"WWW-Authenticate": "Basic"},
            ) from exc
        request.state.audit["token_id"] = issued.token_id
        return TokenAnswer(access_token=bearer, expires_in=service.env.service.token_ttl_s)


# ----------------------------------------------------------------------------- data API


def _fields_param(fields: str | None) -> list[str] | None:
    if fields is None or not fields.strip():
        return None
    return [f.strip() for f in fields.split(",") if f.strip()]


def _record_access(request: Request, found, rows: int, purpose: str | None) -> None:
    request.state.audit |= {
        "fields": list(found.fields),
        "clear_fields": sorted(
            f for f in found.fields if found.resource.field(f).personal and f in found.clear
        ),
        "grant_id": found.grant.id if found.grant else None,
        "purpose": purpose or (found.grant.purpose if found.grant else None),
        "rows_returned": rows,
    }


def _data_routes(app: FastAPI, service: Service) -> None:
    tag = ["数据服务 data"]

    @app.get(
        "/api/v1/resources/{name}/rows",
        response_model=RowsPage,
        responses=ERRORS,
        tags=tag,
        summary="按条件查询 Rows by filters (equality on granted fields), paged",
    )
    def rows(
        request: Request,
        consumer: ConsumerDep,
        name: ResourceName,
        fields: Annotated[
            str | None, Query(max_length=2000, description="逗号分隔 comma-separated")
        ] = None,
        cursor: Annotated[str | None, Query(max_length=2000)] = None,
        limit: Annotated[int, Query(ge=1, description="每页行数 rows per page")] = 100,
        grant: Annotated[str | None, Query(max_length=64)] = None,
    ) -> RowsPage:
        request.state.audit |= {"service": "query", "resource": name}
        resource = service.resource(name)
        if limit > service.env.service.page_limit:
            raise Denied(
                422,
                "page_too_large",
                f"每页至多 {service.env.service.page_limit} 行 (limit at most "
                f"{service.env.service.page_limit}; page with the cursor)",
            )
        grants = service.grants(consumer.code, name)
        found = access(resource, consumer, grants, grant, _fields_param(fields))
        filters = {k: v for k, v in request.query_params.items() if k not in RESERVED_PARAMS}
        result = data.page(service.published, found, filters, cursor, limit)
        _record_access(request, found, len(result.rows), None)
        return RowsPage(
            resource=name,
            grant=found.grant.id if found.grant else None,
            fields=list(found.fields),
            masked=found.masked(),
            rows=result.rows,
            next_cursor=result.next_cursor,
        )

    @app.get(
        "/api/v1/resources/{name}/rows/{key}",
        response_model=OneRow,
        responses=ERRORS,
        tags=tag,
        summary="按主键查询 One row by its business key",
    )
    async def row(
        request: Request,
        consumer: ConsumerDep,
        name: ResourceName,
        key: Annotated[str, PathParam(max_length=128)],
        fields: Annotated[str | None, Query(max_length=2000)] = None,
        grant: Annotated[str | None, Query(max_length=64)] = None,
    ) -> OneRow:
        request.state.audit |= {"service": "query", "resource": name}
        resource = service.resource(name)
        if len(resource.table.key) != 1:
            raise Denied(422, "composite_key", "复合主键请用 /rows 并按各主键字段筛选")
        grants = service.grants(consumer.code, name)
        found = access(resource, consumer, grants, grant, _fields_param(fields))
        value = data.normalised(key) if resource.field(resource.table.key[0]).personal else key
        result = data.by_key(service.published, found, {resource.table.key[0]: value})
        _record_access(request, found, 1 if result else 0, None)
        if result is None:
            raise Denied(404, "not_found", f"{name} 中没有主键为该值的记录 (no such row)")
        return OneRow(
            resource=name,
            grant=found.grant.id if found.grant else None,
            fields=list(found.fields),
            masked=found.masked(),
            row=result,
        )

    app_tag = ["申请与审批 applications"]

    @app.post(
        "/api/v1/applications",
        response_model=Application,
        status_code=201,
        responses=ERRORS,
        tags=app_tag,
        summary="提交共享申请 Apply for a conditional resource",
    )
    def apply(request: Request, consumer: ConsumerDep, body: ApplicationIn) -> Application:
        request.state.audit |= {
            "service": "apply",
            "resource": body.resource,
            "purpose": body.purpose,
            "fields": body.fields,
            "clear_fields": body.clear_fields,
        }
        resource = service.resource(body.resource)
        check_application(
            resource, body.fields, body.clear_fields, body.rows, body.valid_from, body.valid_until
        )
        made = service.store.submit(
            consumer.code,
            resource.name,
            resource.owner.code,
            body.purpose,
            body.legal_basis,
            body.fields,
            body.clear_fields,
            body.rows,
            body.valid_from,
            body.valid_until,
        )
        request.state.audit["grant_id"] = made.id
        return made

    @app.get(
        "/api/v1/applications",
        response_model=list[Application],
        responses=ERRORS,
        tags=app_tag,
        summary="我的申请与待我审批的申请 Mine and those I decide",
    )
    def applications(
        request: Request,
        consumer: ConsumerDep,
        status: Annotated[
            str | None, Query(pattern="^(pending|approved|rejected|revoked)$")
        ] = None,
    ) -> list[Application]:
        request.state.audit["service"] = "apply"
        if consumer.oversight:
            found = service.store.applications(status=status)
        else:
            found = service.store.applications(consumer.code, consumer.code, status)
        return found

    @app.post(
        "/api/v1/applications/{application_id}/decision",
        response_model=Application,
        responses=ERRORS,
        tags=app_tag,
        summary="审批（仅资源所属部门）Approve or reject (the owning department only)",
    )
    def decide(
        request: Request,
        consumer: ConsumerDep,
        application_id: Annotated[str, PathParam(max_length=64)],
        body: Decision,
    ) -> Application:
        request.state.audit |= {"service": "approve", "grant_id": application_id}
        try:
            decided = service.store.decide(
                application_id, consumer.code, body.approve, f"api:{consumer.code}", body.note
            )
        except NoSuchApplication as exc:
            raise Denied(404, "cannot_decide", str(exc)) from exc
        except ApplicationError as exc:
            raise Denied(403, "cannot_decide", str(exc)) from exc
        request.state.audit["resource"] = decided.resource
        return decided

    @app.post(
        "/api/v1/verify",
        response_model=VerifyOut,
        responses=ERRORS,
        tags=["身份证核验 ID verification"],
        summary="身份证实时核验 Does this ID number belong to this name?",
    )
    async def verify(request: Request, consumer: ConsumerDep, body: VerifyIn) -> VerifyOut:
        # A point probe on the key index (well under a millisecond): run on the event loop,
        # as a hop to the thread pool would cost more than the query.
        request.state.audit |= {
            "service": "verify",
            "resource": PERSON_RESOURCE,
            "fields": ["id_number", "name"],
        }
        if "verify" not in consumer.services:
            raise Denied(
                403,
                "service_not_granted",
                f"{consumer.name} 未开通身份证核验服务 (verify not enabled)",
            )
        person = service.resource(PERSON_RESOURCE)
        if not service.published.register_loaded():  # a new publication: load it aside
            await anyio.to_thread.run_sync(service.published.register, person.name)
        answer = data.verify(service.published, person, body.id_number, body.name)
        request.state.audit |= {
            "rows_returned": 0 if answer["code"] in ("not_found", "invalid_number") else 1,
            "reason": answer["code"],
        }
        return VerifyOut(**answer)


# ----------------------------------------------------------------------------- pages


def _pages(app: FastAPI, service: Service) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request):
        return TEMPLATES.TemplateResponse(
            request,
            "home.html",
            {
                "city": service.city,
                "resources": service.resources.values(),
                "consumers": service.consumers.values(),
            },
        )

    @app.get("/catalogue", response_class=HTMLResponse, include_in_schema=False)
    def catalogue_page(
        request: Request,
        q: Annotated[str, Query(max_length=100)] = "",
        library: Annotated[str, Query(max_length=32)] = "",
        sharing: Annotated[str, Query(max_length=16)] = "",
    ):
        request.state.audit["service"] = "catalogue"
        listed = [r for r in service.resources.values() if _matches(r, q, library, sharing)]
        return TEMPLATES.TemplateResponse(
            request,
            "catalogue.html",
            {
                "city": service.city,
                "resources": listed,
                "total": len(service.resources),
                "q": q,
                "library": library,
                "sharing": sharing,
                "libraries": LIBRARY_TITLES,
            },
        )

    @app.get("/catalogue/{name}", response_class=HTMLResponse, include_in_schema=False)
    def resource_page(request: Request, name: ResourceName):
        request.state.audit |= {"service": "catalogue", "resource": name}
        resource = service.resource(name)
        return TEMPLATES.TemplateResponse(
            request,
            "resource.html",
            {
                "city": service.city,
                "r": resource.as_json(),
            },
        )

    @app.get(
        "/api/v1/catalogue",
        tags=["目录 catalogue"],
        summary="政务信息资源目录 The sharing catalogue (public)",
    )
    def catalogue_json(
        request: Request, q: Annotated[str, Query(max_length=100)] = ""
    ) -> list[dict[str, Any]]:
        request.state.audit["service"] = "catalogue"
        return [r.as_json() for r in service.resources.values() if _matches(r, q, "", "")]

    @app.get(
        "/api/v1/catalogue/{name}",
        responses={404: {"model": Error}},
        tags=["目录 catalogue"],
        summary="一项资源 One resource of the catalogue",
    )
    def catalogue_entry(request: Request, name: ResourceName) -> dict[str, Any]:
        request.state.audit |= {"service": "catalogue", "resource": name}
        return service.resource(name).as_json()

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs(request: Request):
        return TEMPLATES.TemplateResponse(request, "docs.html", {"city": service.city})

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}


def _matches(resource: Resource, q: str, library: str, sharing: str) -> bool:
    if library and resource.table.library != library:
        return False
    if sharing and resource.sharing != sharing:
        return False
    if not q:
        return True
    described = resource.as_json()
    haystack = " ".join(
        [
            resource.name,
            described["title"]["zh"],
            described["title"]["en"],
            resource.owner.name,
            resource.owner.name_en,
            described["library_title"],
        ]
        + [f"{f['name']} {f['zh']} {f['en']}" for f in described["fields"]]
    ).lower()
    return all(term in haystack for term in q.lower().split())
