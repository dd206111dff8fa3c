"""库表共享: bulk exchange over the open Delta Sharing protocol (delta-io/delta-sharing PROTOCOL.md).

A department reads a table with the official client: a profile file naming this endpoint and
its bearer token, then `delta_sharing.load_as_pandas("<profile>#<share>.<schema>.<table>",
version=N)`. What it may see is what the data API gives it, in bulk:

    share "shared"        every resource it may read without a grant (its 无条件共享 fields)
    share "grant-<id>"    the one resource of an approved grant: its fields, rows and clear fields

Schemas are the base libraries. A table is served at its published version or an earlier one
whose quality gate passed (`version`; publication lists them), never one that failed its gate
or has not been published. The answer is
the parquet response format; each query's rows are written once into a Parquet file (projected,
masked and filtered per access) that the client fetches by a signed URL of limited life.
"""

import contextlib
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Annotated

import pyarrow.parquet as pq
from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from citylake.config import Consumer
from citylake.lake import delta_relation, duckdb_connection, is_delta
from citylake.service import auth
from citylake.service.resources import SPARK_TYPES, Access, Denied, Resource, access

PREFIX = "/delta-sharing"
SHARED = "shared"
NDJSON = "application/x-ndjson"
NAMESPACE = uuid.UUID("6f0b1d1e-3c51-4e7a-9a51-c17a1a4e0001")


class Paging:
    """maxResults and pageToken of the protocol's listings: accepted; one page holds them all."""

    def __init__(
        self,
        maxResults: Annotated[int | None, Query(ge=0)] = None,  # noqa: N803
        pageToken: Annotated[str | None, Query(max_length=200)] = None,  # noqa: N803
    ):
        self.max_results, self.page_token = maxResults, pageToken


PagingDep = Annotated[Paging, Depends()]


def _grant_share(grant_id: str) -> str:
    return f"grant-{grant_id}"


def routes(app: FastAPI, service, current_consumer: Callable) -> None:
    tag = ["库表共享 Delta Sharing"]
    ConsumerDep = Annotated[Consumer, Depends(current_consumer)]
    Name = Annotated[str, PathParam(max_length=128)]

    def shares_of(consumer: Consumer) -> dict[str, list[tuple[Resource, Access]]]:
        """share → the (resource, access) pairs it holds for this consumer."""
        if "exchange" not in consumer.services:
            raise Denied(
                403,
                "service_not_granted",
                f"{consumer.name} 未开通库表共享服务 (exchange not enabled)",
            )
        found: dict[str, list[tuple[Resource, Access]]] = {SHARED: []}
        for resource in service.resources.values():
            with contextlib.suppress(Denied):
                found[SHARED].append(
                    (resource, access(resource, consumer, [], None, None, "exchange"))
                )
        for grant in service.grants(consumer.code, None):  # one query for every grant
            resource = service.resources.get(grant.resource)
            if resource is not None:
                found[_grant_share(grant.id)] = [
                    (resource, access(resource, consumer, [grant], grant.id, None, "exchange"))
                ]
        return found

    def table_of(
        consumer: Consumer, share: str, schema: str, table: str
    ) -> tuple[Resource, Access]:
        held = shares_of(consumer)
        if share not in held:
            raise Denied(
                404,
                "share_not_found",
                f"没有共享 {share}，或它不属于 {consumer.name} (no such share for you)",
            )
        for resource, granted in held[share]:
            if resource.name == table and resource.table.library == schema:
                return resource, granted
        raise Denied(404, "table_not_found", f"共享 {share} 中没有 {schema}.{table}")

    def page(items: list[dict]) -> dict:
        return {"items": items}

    def held_share(request: Request, consumer: Consumer, share: str) -> list:
        request.state.audit["service"] = "exchange"
        held = shares_of(consumer)
        if share not in held:
            raise Denied(404, "share_not_found", f"没有共享 {share} (no such share for you)")
        return held[share]

    def tables(share: str, held: list, schema: str | None) -> list[dict]:
        return [
            {
                "name": r.name,
                "schema": r.table.library,
                "share": share,
                "shareId": share,
                "id": str(uuid.uuid5(NAMESPACE, f"{share}/{r.name}")),
            }
            for r, _ in held
            if schema is None or r.table.library == schema
        ]

    @app.get(f"{PREFIX}/shares", tags=tag, summary="共享列表 List shares")
    def list_shares(request: Request, consumer: ConsumerDep, paging: PagingDep) -> dict:
        request.state.audit["service"] = "exchange"
        return page([{"name": s, "id": s} for s in shares_of(consumer)])

    @app.get(f"{PREFIX}/shares/{{share}}", tags=tag, summary="一个共享 Get a share")
    def get_share(request: Request, consumer: ConsumerDep, share: Name) -> dict:
        held_share(request, consumer, share)
        return {"share": {"name": share, "id": share}}

    @app.get(f"{PREFIX}/shares/{{share}}/schemas", tags=tag, summary="库列表 List schemas")
    def list_schemas(
        request: Request, consumer: ConsumerDep, share: Name, paging: PagingDep
    ) -> dict:
        libraries = sorted({r.table.library for r, _ in held_share(request, consumer, share)})
        return page([{"name": lib, "share": share} for lib in libraries])

    @app.get(
        f"{PREFIX}/shares/{{share}}/schemas/{{schema}}/tables",
        tags=tag,
        summary="表列表 List tables in a schema",
    )
    def list_tables(
        request: Request, consumer: ConsumerDep, share: Name, schema: Name, paging: PagingDep
    ) -> dict:
        return page(tables(share, held_share(request, consumer, share), schema))

    @app.get(f"{PREFIX}/shares/{{share}}/all-tables", tags=tag, summary="共享中全部表 All tables")
    def all_tables(request: Request, consumer: ConsumerDep, share: Name, paging: PagingDep) -> dict:
        return page(tables(share, held_share(request, consumer, share), None))

    def published_version(resource: Resource) -> int:
        version = service.published.version(resource.name)
        if version is None:
            raise Denied(404, "not_published", f"{resource.name} 尚未发布 (not published yet)")
        return version

    def audit(request: Request, resource: Resource, granted: Access, share: str) -> None:
        request.state.audit |= {
            "service": "exchange",
            "resource": resource.name,
            "grant_id": granted.grant.id if granted.grant else None,
            "purpose": granted.grant.purpose if granted.grant else None,
            "fields": list(granted.fields),
            "clear_fields": sorted(f for f in granted.fields if f in granted.clear),
        }

    @app.get(
        f"{PREFIX}/shares/{{share}}/schemas/{{schema}}/tables/{{table}}/version",
        tags=tag,
        summary="表版本 Table version",
    )
    def table_version(
        request: Request,
        consumer: ConsumerDep,
        share: Name,
        schema: Name,
        table: Name,
        startingTimestamp: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:  # noqa: N803
        resource, granted = table_of(consumer, share, schema, table)
        audit(request, resource, granted, share)
        version = published_version(resource)
        return Response(status_code=200, headers={"Delta-Table-Version": str(version)})

    def metadata_lines(resource: Resource, granted: Access, share: str, version: int) -> list[str]:
        fields = []
        for name in granted.fields:
            column = resource.field(name)
            masked = column.personal is not None and name not in granted.clear
            fields.append(
                {
                    "name": name,
                    "type": "string" if masked else SPARK_TYPES[column.type],
                    "nullable": True,
                    "metadata": {"comment": column.description},
                }
            )
        schema = json.dumps({"type": "struct", "fields": fields}, ensure_ascii=False)
        metadata = {
            "id": str(uuid.uuid5(NAMESPACE, f"{share}/{resource.name}")),
            "name": resource.name,
            "description": resource.table.meta.description.zh,
            "format": {"provider": "parquet"},
            "schemaString": schema,
            "partitionColumns": [],
            "configuration": {},
            "version": version,
        }
        return [
            json.dumps({"protocol": {"minReaderVersion": 1}}),
            json.dumps({"metaData": metadata}, ensure_ascii=False),
        ]

    @app.get(
        f"{PREFIX}/shares/{{share}}/schemas/{{schema}}/tables/{{table}}/metadata",
        tags=tag,
        summary="表元数据 Table metadata",
    )
    def table_metadata(
        request: Request, consumer: ConsumerDep, share: Name, schema: Name, table: Name
    ) -> Response:
        resource, granted = table_of(consumer, share, schema, table)
        audit(request, resource, granted, share)
        version = published_version(resource)
        lines = metadata_lines(resource, granted, share, version)
        # responseformat=parquet, never echoing the client's "delta": it would switch the client
        # to the Delta format, which this server does not answer in.
        return Response(
            "\n".join(lines) + "\n",
            media_type=NDJSON,
            headers={
                "Delta-Table-Version": str(version),
                "delta-sharing-capabilities": "responseformat=parquet",
            },
        )

    def write_file(resource: Resource, granted: Access, version: int) -> tuple[str, int, int]:
        """The query's rows as one Parquet file (cached by what it holds): name, size, rows."""
        condition, values = granted.row_condition()
        identity = json.dumps(
            [
                resource.name,
                version,
                granted.fields,
                sorted(granted.clear),
                sorted(granted.rows.items()),
            ],
            ensure_ascii=False,
        )
        name = hashlib.sha256(identity.encode()).hexdigest()[:32] + ".parquet"
        folder = service.env.root / "service" / "exchange"
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            lake_path = service.env.table_path("gold", resource.name)
            if not is_delta(lake_path):
                raise Denied(404, "not_published", f"{resource.name} 尚无数据 (no table yet)")
            con = duckdb_connection()
            try:
                relation = delta_relation(lake_path, version)
                rows = con.execute(
                    f"SELECT {granted.select_list(stored_masks=False)} FROM {relation} WHERE {condition}",
                    values,
                ).fetch_arrow_table()
            except Exception as exc:  # noqa: BLE001 - an old version may predate a column
                raise Denied(
                    404,
                    "version_not_readable",
                    f"{resource.name} 版本 {version} 不可读 (version not readable): "
                    f"{type(exc).__name__}",
                ) from exc
            finally:
                con.close()
            partial = path.with_suffix(".partial")
            pq.write_table(rows, partial)
            partial.chmod(0o600)
            partial.replace(path)
        return name, path.stat().st_size, pq.ParquetFile(path).metadata.num_rows

    @app.post(
        f"{PREFIX}/shares/{{share}}/schemas/{{schema}}/tables/{{table}}/query",
        tags=tag,
        summary="读取表数据 Query a table (parquet format)",
    )
    def query_table(
        request: Request,
        consumer: ConsumerDep,
        share: Name,
        schema: Name,
        table: Name,
        body: Annotated[dict, Body()] = None,
    ) -> Response:
        resource, granted = table_of(consumer, share, schema, table)
        audit(request, resource, granted, share)
        body = body or {}
        newest = published_version(resource)
        version = body.get("version", newest)
        if body.get("timestamp") is not None or body.get("startingVersion") is not None:
            raise Denied(422, "unsupported", "仅支持按版本读取快照 (snapshot by version only)")
        readable = service.published.readable_versions(resource.name)
        if not isinstance(version, int) or isinstance(version, bool) or version not in readable:
            listed = ", ".join(map(str, sorted(readable)))
            raise Denied(
                404,
                "version_not_published",
                f"{resource.name} 只可读取通过质量闸门并已发布的版本 {listed} "
                "(gate-passed published versions only)",
            )
        name, size, rows = write_file(resource, granted, version)
        expires = int(time.time()) + service.env.service.file_url_ttl_s
        signature = auth.sign_file(service.key, f"{name}\n{consumer.code}", expires)
        url = str(request.base_url).rstrip("/") + (
            f"{PREFIX}/files/{name}?c={consumer.code}&expires={expires}&sig={signature}"
        )
        lines = metadata_lines(resource, granted, share, version)
        lines.append(
            json.dumps(
                {
                    "file": {
                        "url": url,
                        "id": name[:-8],
                        "partitionValues": {},
                        "size": size,
                        "stats": json.dumps({"numRecords": rows}),
                        "version": version,
                        "timestamp": int(dt.datetime.now(dt.UTC).timestamp() * 1000),
                        "expirationTimestamp": expires * 1000,
                    }
                }
            )
        )
        request.state.audit["rows_returned"] = rows
        return Response(
            "\n".join(lines) + "\n",
            media_type=NDJSON,
            headers={"Delta-Table-Version": str(version)},
        )

    @app.api_route(
        f"{PREFIX}/files/{{name}}",
        methods=["GET", "HEAD"],
        tags=tag,
        summary="预签名文件 A presigned file of a query",
    )
    def file(
        request: Request,
        name: Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}\.parquet$")],
        c: Annotated[str, Query(max_length=32)],
        expires: int,
        sig: Annotated[str, Query(max_length=128)],
    ) -> FileResponse:
        request.state.audit |= {
            "service": "exchange",
            "consumer": c if c in service.consumers else None,
        }
        if not auth.file_signature_ok(service.key, f"{name}\n{c}", expires, sig):
            raise Denied(403, "bad_signature", "链接无效或已过期 (the URL is invalid or expired)")
        path = service.env.root / "service" / "exchange" / name
        if not path.exists():
            raise Denied(404, "file_gone", "文件已清理，请重新查询 (query again)")
        return FileResponse(path, media_type="application/octet-stream")
