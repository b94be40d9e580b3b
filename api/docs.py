"""The API reference page, /docs (Swagger UI), served whole from this server.

Swagger UI's files come from the pinned `fastapi-offline` package and its start-up script from
api/static: no CDN and no inline script, so the page works offline and under a
Content-Security-Policy of `'self'`. There is no /redoc: ReDoc 2 writes <style> elements as it
loads, starts a blob: worker and shows a logo from its CDN, none of which such a policy allows."""

from __future__ import annotations

import html
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

VENDOR = Path(fastapi_offline.__file__).resolve().parent / "static"
OWN = Path(__file__).resolve().parent / "static"
DOCS_URL = "/docs"
VENDOR_URL = f"{DOCS_URL}/vendor"
OWN_URL = f"{DOCS_URL}/static"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{root}{own}/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{root}{vendor}/swagger-ui.css">
</head>
<body><div id="swagger-ui" data-openapi-url="{root}{openapi}"></div>
<script src="{root}{vendor}/swagger-ui-bundle.js"></script>
<script src="{root}{own}/swagger-init.js"></script>
</body></html>
"""


async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: every operation with its schemas, and "Try it out" with an API key."""
    app: FastAPI = request.app
    body = _PAGE.format(
        title=html.escape(f"{app.title}: Swagger UI"),
        root=html.escape(request.scope.get("root_path", "").rstrip("/")),
        own=OWN_URL,
        vendor=VENDOR_URL,
        openapi=html.escape(app.openapi_url or "/openapi.json"),
    )
    return HTMLResponse(body)


def mount_docs(app: FastAPI) -> None:
    """Serve /docs and its files; the app must be built with docs_url=None."""
    app.mount(VENDOR_URL, StaticFiles(directory=VENDOR), name="docs-vendor")
    app.mount(OWN_URL, StaticFiles(directory=OWN), name="docs-static")
    app.add_api_route(DOCS_URL, swagger_ui, include_in_schema=False, response_class=HTMLResponse)
