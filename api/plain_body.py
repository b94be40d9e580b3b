"""A JSON body read and validated as FastAPI reads a route's model, for a route that declares none.

`POST /events/send` is the front door's busiest route and its work per request is small, so
FastAPI's parameter machinery (solving the key's dependencies and the body field, with their
caches and scopes) was a fifth of the event loop's time per request. The route takes the
`Request` and calls these and the key's dependencies itself, in the order every route answers
in: the key is checked first, then the body is decoded (422 if it is not JSON), then validated.
The errors are FastAPI's, so api/errors.py answers them as for any other route.
"""

from __future__ import annotations

import email.message
import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

# What a request without a body is: FastAPI's "missing" body (a JSON null is validated).
MISSING: Any = object()


async def json_body(request: Request) -> Any:
    """The decoded body if its content type is JSON, the bytes otherwise (validation refuses
    them), MISSING if there is none. 422 (json_invalid) for a JSON body that does not parse."""
    try:
        raw = await request.body()
        if not raw:
            return MISSING
        if not _is_json(request.headers.get("content-type")):
            return raw  # FastAPI's strict content type: never guessed to be JSON
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error], body=exc.doc) from exc
    except HTTPException:
        raise
    except Exception as exc:  # a body that is not text, a client gone: FastAPI's 400
        raise HTTPException(400, "There was an error parsing the body") from exc


def validated(model: type[Model], body: Any) -> Model:
    """The body as `model`, or FastAPI's RequestValidationError (locations under "body")."""
    if body is MISSING:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing], body=body)
    try:
        return model.model_validate(body, from_attributes=True)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=body) from None


def _is_json(content_type: str | None) -> bool:
    if content_type == "application/json":
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def documented_body(model: type[BaseModel], *, key_scheme: str) -> dict[str, Any]:
    """The route's `openapi_extra`: its JSON body as `model` and the security scheme of its
    key, as FastAPI writes them for declared parameters."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"content": {"application/json": {"schema": schema}}, "required": True},
        "security": [{key_scheme: []}],
    }
