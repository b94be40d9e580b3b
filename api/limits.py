"""Request limits: body size, and an optional rate limit shared by every server through Redis."""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass
from typing import Any

import redis
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.asgi import HttpMiddleware
from api.errors import ApiError, error_response

log = logging.getLogger(__name__)


class BodySizeLimit(HttpMiddleware):
    """Refuses a request body over `max_bytes` with 413, whether or not it declared a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit():
            # The server reads exactly the declared length: checking the number is enough.
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        # A chunked body says its size only at its end: read it here, up to the limit, so that
        # the answer is a 413 whoever reads it later (FastAPI turns a failed read into a 400).
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await self.app(scope, _replaying(messages, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is larger than {self.max_bytes} bytes"
        await error_response(413, "request_too_large", message)(scope, receive, send)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """The messages already read, then the connection's own (a disconnect, when it comes)."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


# A sliding window log, atomic in Redis: the bucket's requests of the last window are a sorted
# set of their times (Redis's own clock, so that servers agree); one more is admitted only while
# fewer than the limit remain. Refused requests are not recorded: waiting is enough to get in.
# ARGV[4] = "0" only looks: whether one more would be admitted, recording nothing.
_SLIDING_WINDOW = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local admitted = 0
if count < limit then
  admitted = 1
  if ARGV[4] == '1' then
    redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
    count = count + 1
  end
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2] or now
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2] or now
return {admitted, count, tonumber(oldest) + window - now, tonumber(newest) + window - now}
"""
WINDOW_MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class Verdict:
    """A rate limit decision: the headers to answer with, and how long to wait if refused."""

    headers: dict[str, str]
    retry_after: int | None = None

    def enforce(self) -> dict[str, str]:
        """The headers to answer with; ApiError 429 if refused."""
        if self.retry_after is not None:
            raise ApiError(429, "rate_limit_exceeded", "Too many requests, slow down", self.headers)
        return self.headers


class RateLimiter:
    """At most `per_second` requests in any one-second window per bucket, across servers.

    A bucket is an API key, or the client's address for requests without a valid key: those
    are counted when they fail, and while an address is over its allowance no key it presents
    is looked up, so a right guess is refused like a wrong one."""

    def __init__(self, per_second: int, redis_url: str | None) -> None:
        self.per_second = per_second
        self._redis: Any = redis.Redis.from_url(redis_url) if per_second and redis_url else None
        self._script = self._redis.register_script(_SLIDING_WINDOW) if self._redis else None

    @property
    def active(self) -> bool:
        """Whether requests are counted at all (a limit is set and Redis is configured)."""
        return self._script is not None

    def check_key(self, key_id: object) -> dict[str, str]:
        """Count one request of this key: its `ratelimit-*` headers, or ApiError 429."""
        return self._run(f"automations:ratelimit:key:{key_id}", record=True).enforce()

    def count_address(self, address: str) -> Verdict:
        """Count one failed request (no key, a wrong one) from this address."""
        return self._run(f"automations:ratelimit:address:{address}", record=True)

    def peek_address(self, address: str) -> Verdict:
        """Whether this address is already over its allowance of failed requests."""
        return self._run(f"automations:ratelimit:address:{address}", record=False)

    def _run(self, bucket: str, *, record: bool) -> Verdict:
        if self._script is None:
            return Verdict({})
        try:
            admitted, count, free_at, empty_at = self._script(
                keys=[bucket],
                args=[
                    self.per_second,
                    WINDOW_MICROSECONDS,
                    secrets.token_hex(4),
                    "1" if record else "0",
                ],
            )
        except redis.RedisError:
            log.warning("rate limit store unreachable; request allowed")
            return Verdict({})
        headers = {
            "ratelimit-limit": str(self.per_second),
            "ratelimit-remaining": str(max(self.per_second - int(count), 0)),
            # When the whole quota is back: the newest counted request leaves the window.
            "ratelimit-reset": str(_seconds(empty_at)),
        }
        if admitted:
            return Verdict(headers)
        # When one more fits: the oldest counted request leaves the window.
        wait = _seconds(free_at)
        return Verdict({**headers, "retry-after": str(wait)}, retry_after=wait)


def _seconds(microseconds: int) -> int:
    """Whole seconds, rounded up and at least 1 (Retry-After has no fractions)."""
    return max(math.ceil(int(microseconds) / 1_000_000), 1)


# Where a request's rate limit headers wait, in its state, for RateLimitHeaders to send them.
HEADERS_STATE = "ratelimit_headers"


class RateLimitHeaders(HttpMiddleware):
    """Puts the `ratelimit-*` headers of a counted request on its answer, whatever the answer
    (the route's, a validation error, a replay)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})

        async def with_headers(message: Message) -> None:
            counted = state.get(HEADERS_STATE)
            if message["type"] == "http.response.start" and counted:
                headers = MutableHeaders(scope=message)
                for name, value in counted.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
