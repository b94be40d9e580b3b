"""Idempotency-Key on POST: the first answer is stored and replayed for 24 hours.

The record is opened by the route's key dependency (api.deps), once the caller is known and
within its rate limit, and scoped to the caller's key id; the middleware below keeps the answer
when the route is done. A request refused before that opens no record."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.asgi import route_path
from engine import idempotency
from engine.api_keys import Caller
from engine.db import transaction
from engine.runtime import Runtime

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
# POSTs that write nothing: a repeat answers the same without a stored replay, and a
# simulation must leave the database exactly as it found it.
WITHOUT_REPLAY = frozenset({"/automations/simulate"})
# POSTs whose answer holds a secret shown once (a new API key's): what is kept for a replay is
# a refusal naming what was created, so that no secret is stored outside its hash.
SECRET_ANSWERS = frozenset({"/api-keys"})
# Where the opened record's key waits, in the request's state, for the middleware to close it.
_OPENED = "idempotency_scope_key"


class Replayed(Exception):
    """The key's first answer, to send again instead of running the route."""

    def __init__(self, replay: idempotency.Replay) -> None:
        super().__init__("replayed")
        self.replay = replay


async def claim_idempotency_key(request: Request, caller: Caller) -> None:
    """Open the record of this POST's Idempotency-Key, or raise Replayed or a 409 conflict."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None or route_path(request.scope) in WITHOUT_REPLAY:
        return
    rt: Runtime = request.app.state.runtime
    scope_key = idempotency.scope_key(str(caller.key_id), key)
    fingerprint = idempotency.request_hash(
        request.method, request.scope["path"], await request.body()
    )

    # Database work runs in the thread pool: the event loop never waits on a query.
    def begin() -> idempotency.Replay | None:
        with transaction(rt.sessions) as session:
            return idempotency.begin(session, scope_key, fingerprint, now=rt.clock.now())

    replay = await run_in_threadpool(begin)
    if replay is not None:
        raise Replayed(replay)
    request.state.idempotency_scope_key = scope_key  # read back below as state[_OPENED]


def _replayed(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replayed)
    return Response(
        exc.replay.body,
        status_code=exc.replay.status_code,
        media_type="application/json",
        headers={"idempotent-replayed": "true"},
    )


class IdempotencyMiddleware:
    """Keeps the answer of a request whose Idempotency-Key record a dependency opened."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app, self.rt = app, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keyed = HEADER.encode() in dict(scope.get("headers", []))
        if scope["type"] != "http" or scope["method"] != "POST" or not keyed:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        status, finished = 500, False
        chunks: list[bytes] = []

        async def finish() -> None:
            nonlocal finished
            opened = state.get(_OPENED)
            if opened is None or finished:
                return
            finished = True
            kept_status, kept_body = status, b"".join(chunks)
            if route_path(scope) in SECRET_ANSWERS:
                kept_status, kept_body = _without_secret(status, kept_body)
            try:
                await run_in_threadpool(self._finish, opened, kept_status, kept_body)
            except Exception:
                # The answer still goes out; the record, left in progress, is taken over by a
                # retry after idempotency.ABANDONED_AFTER.
                log.exception("could not keep the answer of an Idempotency-Key request")

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    # Kept before the client has the answer: a retry it sends on receipt
                    # gets the replay, not a 409 for a request still "in progress".
                    await finish()
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            # An exception escaping the app is a 500: the record is dropped, a retry runs.
            await finish()

    def _finish(self, scope_key: str, status: int, body: bytes) -> None:
        with transaction(self.rt.sessions) as session:
            idempotency.finish(session, scope_key, status, body)


def _without_secret(status: int, body: bytes) -> tuple[int, bytes]:
    """What a replay of a created API key answers: the key's id, never its secret again."""
    if status != 201:
        return status, body
    try:
        created = json.loads(body).get("id")
    except (ValueError, AttributeError):
        created = None
    message = (
        f"This Idempotency-Key already created API key {created}; its secret was shown only in "
        "that answer and is not kept. Delete the key if its secret was lost, and create another."
    )
    refusal = {"statusCode": 409, "name": "invalid_idempotent_request", "message": message}
    return 409, json.dumps(refusal).encode()


def install_idempotency(app: FastAPI, runtime: Runtime) -> None:
    """The middleware that keeps answers, and the handler that replays them."""
    app.add_exception_handler(Replayed, _replayed)
    app.add_middleware(IdempotencyMiddleware, runtime=runtime)
