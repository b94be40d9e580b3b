"""Idempotency-Key on POST: the first answer is stored and replayed for 24 hours."""

from __future__ import annotations

import hashlib

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from engine import idempotency
from engine.db import transaction
from engine.errors import AutomationsError
from engine.runtime import Runtime

# POSTs that write nothing: a repeat answers the same without a stored replay, and a
# simulation must leave the database exactly as it found it.
WITHOUT_REPLAY = frozenset({"/automations/simulate"})


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app, self.rt = app, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        key = headers.get(b"idempotency-key")
        auth = headers.get(b"authorization")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or key is None
            or auth is None
            or scope["path"] in WITHOUT_REPLAY
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        # Keys are scoped to the caller: the same key from two API keys never collides.
        caller = hashlib.sha256(auth).hexdigest()
        try:
            scope_key = idempotency.scope_key(caller, key.decode("utf-8", "replace"))
            fingerprint = idempotency.request_hash(scope["method"], scope["path"], body)
            replay = await run_in_threadpool(self._begin, scope_key, fingerprint)
        except AutomationsError as exc:
            status = 409 if isinstance(exc, idempotency.IdempotencyConflict) else 422
            await error_response(status, exc.code, exc.message)(scope, receive, send)
            return
        if replay is not None:
            await _send_replay(send, replay)
            return
        status, chunks = 500, []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, _replay_body(body), capture)
        finally:
            await run_in_threadpool(self._finish, scope_key, status, b"".join(chunks))

    # Database work runs in the thread pool: the event loop never waits on a query.
    def _begin(self, scope_key: str, fingerprint: str) -> idempotency.Replay | None:
        with transaction(self.rt.sessions) as session:
            return idempotency.begin(session, scope_key, fingerprint, now=self.rt.clock.now())

    def _finish(self, scope_key: str, status: int, body: bytes) -> None:
        with transaction(self.rt.sessions) as session:
            idempotency.finish(session, scope_key, status, body)


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def _replay_body(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send_replay(send: Send, replay: idempotency.Replay) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": replay.status_code,
            "headers": [(b"content-type", b"application/json"), (b"idempotent-replayed", b"true")],
        }
    )
    await send({"type": "http.response.body", "body": replay.body})
