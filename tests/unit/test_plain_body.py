"""api/plain_body.py answers every body as FastAPI does for a declared model parameter."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from api.errors import install_error_handlers
from api.plain_body import json_body, validated
from api.schemas.events import SendEvent
from tests.loops import run_loop


async def _let_in(_: Request) -> None:
    """No key to check: the routes here compare bodies only."""


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, _let_in)

    @app.post("/declared")
    async def declared(body: SendEvent) -> Response:
        return Response(body.model_dump_json(), media_type="application/json")

    @app.post("/plain")
    async def plain(request: Request) -> Response:
        body = validated(SendEvent, await json_body(request))
        return Response(body.model_dump_json(), media_type="application/json")

    return app


PATHS = ("/declared", "/plain")
JSON = {"content-type": "application/json"}
CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("valid", b'{"event": "a", "email": "x@y.test"}', JSON),
    (
        "with charset",
        b'{"event": "a", "email": "x@y.test"}',
        {"content-type": "application/json; charset=utf-8"},
    ),
    (
        "+json subtype",
        b'{"event": "a", "email": "x@y.test"}',
        {"content-type": "application/vnd.api+json"},
    ),
    ("not JSON", b'{"event": ', JSON),
    ("not UTF-8", b'{"event": "\xff"}', JSON),
    ("empty", b"", JSON),
    ("null", b"null", JSON),
    ("a list", b"[]", JSON),
    ("a string", b'"event"', JSON),
    ("no content type", b'{"event": "a", "email": "x@y.test"}', {}),
    ("text/plain", b'{"event": "a", "email": "x@y.test"}', {"content-type": "text/plain"}),
    ("event missing", b'{"email": "x@y.test"}', JSON),
    ("event empty", b'{"event": ""}', JSON),
    ("event too long", b'{"event": "' + b"e" * 256 + b'"}', JSON),
    ("unknown field", b'{"event": "a", "colour": 1}', JSON),
    ("payload not an object", b'{"event": "a", "payload": [1]}', JSON),
    ("email not a string", b'{"event": "a", "email": 7}', JSON),
]


@pytest.mark.parametrize(
    ("body", "headers"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_the_plain_route_answers_as_the_declared_one(body: bytes, headers: dict[str, str]) -> None:
    async def both() -> list[tuple[int, Any]]:
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = [await client.post(path, content=body, headers=headers) for path in PATHS]
        return [(answer.status_code, answer.json()) for answer in answers]

    declared, plain = run_loop(both())
    assert plain == declared
