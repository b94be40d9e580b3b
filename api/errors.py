"""The one place where errors become HTTP answers, always `{statusCode, name, message}`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.asgi import HttpMiddleware
from engine.errors import AutomationsError, Conflict, Contended, Forbidden, InvalidInput, NotFound
from engine.idempotency import IdempotencyConflict

log = logging.getLogger(__name__)

_HTTP_NAMES = {
    401: "missing_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    409: "invalid_idempotent_request",
    413: "request_too_large",
    422: "validation_error",
    429: "rate_limit_exceeded",
}


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    statusCode: int
    name: str
    message: str


def _described(text: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": text}


# Declared on every route, so that /openapi.json tells the truth about error answers.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _described(
        "Missing or invalid API key, or a sending key on a route other than sending "
        "(`restricted_api_key`)"
    ),
    404: _described("Not found"),
    409: _described("Idempotency-Key conflict, or a concurrent change of the same thing"),
    413: _described("Request body too large"),
    422: _described("Invalid input: the message names the field and the rule"),
    429: _described("Rate limit exceeded"),
    500: _described("Internal error (never with a stack trace)"),
}


class ApiError(Exception):
    """An answer decided by the HTTP layer itself (authentication, limits)."""

    def __init__(
        self, status: int, name: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.name, self.message, self.headers = status, name, message, headers


def error_response(
    status: int, name: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    # A message may quote the request, and a lone surrogate (\ud800) in it has no UTF-8.
    text = message.encode("utf-8", "backslashreplace").decode()
    body = {"statusCode": status, "name": name, "message": text}
    return JSONResponse(body, status_code=status, headers=headers)


def _engine_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AutomationsError)
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", exc.message)
    if isinstance(exc, Forbidden):  # Resend answers a restricted key 401, not 403
        return error_response(401, exc.code, exc.message)
    if isinstance(exc, IdempotencyConflict | Contended):
        return error_response(409, exc.code, exc.message)
    if isinstance(exc, InvalidInput | Conflict):
        return error_response(422, exc.code, exc.message)
    log.error("unmapped engine error: %s", exc.message)
    return error_response(500, "application_error", "Internal server error")


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


# Raises what a request's route would refuse it with (api/deps.refuse_before_body).
Guard = Callable[[Request], Awaitable[None]]


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    field = _field(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "missing":
        return error_response(422, "missing_required_field", f"Missing `{field}` field.")
    message = str(first.get("msg", "is invalid"))
    return error_response(422, "validation_error", f"`{field}`: {message}")


async def _undecodable(guard: Guard, request: Request) -> JSONResponse:
    """A body FastAPI could not decode: 422 to a caller the route lets in, else the route's
    refusal (FastAPI decodes a body before it runs the route's key check)."""
    try:
        await guard(request)
    except ApiError as refused:
        return _api_error(request, refused)
    except AutomationsError as refused:
        return _engine_error(request, refused)
    return error_response(422, "validation_error", "The request body is not valid JSON.")


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    name = _HTTP_NAMES.get(exc.status_code, "application_error")
    message = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, name, message, getattr(exc, "headers", None))


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.name, exc.message, exc.headers)


def _unstorable(_: Request, exc: Exception) -> JSONResponse:
    # The transaction was rolled back: nothing was written. PostgreSQL refuses e.g. NUL in text.
    log.warning("database refused a value: %s", type(exc.__cause__ or exc).__name__)
    return error_response(
        422, "validation_error", "The request holds a value that cannot be stored (e.g. a NUL)."
    )


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "application_error", "Internal server error")


class AnswerUnexpected(HttpMiddleware):
    """An exception no handler maps, answered 500 here and kept here.

    Left to Starlette's outermost layer (the `Exception` handler), it is answered the same, then
    raised on to the server, which logs it a second time and closes the client's keep-alive
    connection: the client's next request on it fails too. A response already under way when
    the exception came cannot be finished: that one still goes up, and its connection closes.
    `answer` makes the response (the API's JSON error by default; wiring gives the dashboard's
    page to the dashboard's app, inside which it must sit, as Starlette's layer is there too).
    """

    def __init__(
        self, app: ASGIApp, answer: Callable[[Request, Exception], Response] | None = None
    ) -> None:
        super().__init__(app)
        self.answer = answer or _unexpected

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            await self.answer(Request(scope), exc)(scope, receive, send)


def install_error_handlers(app: FastAPI, guard: Guard) -> None:
    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if exc.errors()[0].get("type") == "json_invalid":
            return await _undecodable(guard, request)
        return _validation_error(request, exc)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI's answer to a body it cannot decode
            return await _undecodable(guard, request)
        return _http_error(request, exc)

    app.add_exception_handler(AutomationsError, _engine_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)
