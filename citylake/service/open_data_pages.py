"""公共数据开放 pages: the open-data packages `citylake open-data` wrote, public, no token.

/open-data                         the packages, with their resources, in Chinese
/open-data/<package>/<file>        datapackage.json, its CSV and Parquet files
/api/v1/open-data                  the same list as JSON (each package's datapackage.json)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from citylake.service.resources import Denied

MEDIA_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
}


def packages(folder: Path) -> list[dict]:
    """Every package's datapackage.json, by name."""
    if not folder.is_dir():
        return []
    found = []
    for descriptor in sorted(folder.glob("*/datapackage.json")):
        found.append(json.loads(descriptor.read_text(encoding="utf-8")))
    return found


def routes(app: FastAPI, service) -> None:
    from citylake.service.app import TEMPLATES

    folder = service.env.open_data_dir

    @app.get("/open-data", response_class=HTMLResponse, include_in_schema=False)
    def open_data_page(request: Request):
        request.state.audit["service"] = "open_data"
        return TEMPLATES.TemplateResponse(
            request,
            "open_data.html",
            {
                "city": service.city,
                "packages": packages(folder),
            },
        )

    @app.get(
        "/api/v1/open-data",
        tags=["公共数据开放 open data"],
        summary="开放数据包列表 Open data packages (public)",
    )
    def open_data_json(request: Request) -> list[dict[str, Any]]:
        request.state.audit["service"] = "open_data"
        return packages(folder)

    @app.get(
        "/open-data/{package}/{name}",
        tags=["公共数据开放 open data"],
        summary="开放数据文件 A file of an open data package (public)",
    )
    def open_data_file(
        request: Request,
        package: Annotated[str, PathParam(pattern=r"^[a-z0-9_-]{1,64}$")],
        name: Annotated[str, PathParam(pattern=r"^[a-z0-9_.-]{1,128}$")],
    ) -> FileResponse:
        request.state.audit |= {"service": "open_data", "resource": package}
        path = folder / package / name
        # Names are patterned (no "/" nor leading dots); resolve() also refuses a link out.
        if (
            name.startswith(".")
            or path.suffix not in MEDIA_TYPES
            or not path.is_file()
            or not path.resolve().is_relative_to(folder.resolve())
        ):
            raise Denied(404, "not_found", f"开放数据中没有 {package}/{name} (no such file)")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix])
