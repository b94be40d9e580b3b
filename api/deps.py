"""Dependencies shared by the routes: the runtime, the caller, the rate limit."""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import Depends, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from engine.api_keys import Caller, authenticate, hash_secret
from engine.db import transaction
from engine.dispatch import Dispatcher
from engine.runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def dispatcher(request: Request) -> Dispatcher:
    sender: Dispatcher = request.app.state.dispatcher
    return sender


class KeyCache:
    """Verified keys for a few seconds, so that a burst of requests costs one lookup."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[Caller, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Caller | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def clear(self) -> None:
        """Forget every key at once, after one is deleted."""
        with self._lock:
            self._entries.clear()

    def put(self, digest: str, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (caller, time.monotonic() + self.ttl)


# Declares the scheme in the OpenAPI (Swagger UI's Authorize, generated clients); `caller` parses.
bearer_key = HTTPBearer(auto_error=False, scheme_name="ApiKey", description="An API key")
Declared = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_key)]


def caller(request: Request, response: Response, _bearer: Declared) -> Caller:
    """The authenticated caller; 401 without a valid `Authorization: Bearer` key."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "missing_api_key", "Missing API key in the authorization header")
    secret = secret.strip()
    rt = runtime(request)
    cache: KeyCache = request.app.state.key_cache
    digest = hash_secret(secret)
    found = cache.get(digest)
    if found is None:
        settings_key = rt.settings.api_key.get_secret_value() if rt.settings.api_key else None
        with transaction(rt.sessions) as session:
            found = authenticate(session, secret, settings_key=settings_key)
        if found is None:
            raise ApiError(401, "invalid_api_key", "API key is invalid")
        cache.put(digest, found)
    request.app.state.rate_limiter.check(found, response)
    return found


Rt = Annotated[Runtime, Depends(runtime)]
Authenticated = Annotated[Caller, Depends(caller)]
Sender = Annotated[Dispatcher, Depends(dispatcher)]
