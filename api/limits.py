"""Request limits: body size, and an optional per-key rate limit shared through Redis."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import redis
from fastapi import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response
from engine.api_keys import Caller

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Refuses a request body over `max_bytes` with 413, whether or not it declared a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is larger than {self.max_bytes} bytes"
        await error_response(413, "request_too_large", message)(scope, receive, send)


class _TooLarge(Exception):
    pass


class RateLimiter:
    """At most `per_second` requests per API key per second, counted in Redis across servers."""

    def __init__(self, per_second: int, redis_url: str | None) -> None:
        self.per_second = per_second
        self._redis: Any = redis.Redis.from_url(redis_url) if per_second and redis_url else None

    def check(self, caller: Caller, response: Response) -> None:
        if self._redis is None:
            return
        now = time.time()
        window = int(now)
        key = f"automations:ratelimit:{caller.key_id}:{window}"
        try:
            with self._redis.pipeline() as pipe:
                count, _ = pipe.incr(key).expire(key, 2).execute()
        except redis.RedisError:
            log.warning("rate limit store unreachable; request allowed")
            return
        reset = max(math.ceil(window + 1 - now), 1)
        headers = {
            "ratelimit-limit": str(self.per_second),
            "ratelimit-remaining": str(max(self.per_second - count, 0)),
            "ratelimit-reset": str(reset),
        }
        if count > self.per_second:
            headers["retry-after"] = str(reset)
            raise ApiError(429, "rate_limit_exceeded", "Too many requests, slow down", headers)
        response.headers.update(headers)
