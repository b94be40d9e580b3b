"""Dependencies shared by the routes: the runtime, and who calls with what permission.

Every route that needs a key takes `Authenticated` (full access) or `Sending` (any key, for the
routes that send); a sending key gets 401 `restricted_api_key` everywhere else. Both count the
request against the rate limit and open its Idempotency-Key record, in that order, so that a
refused request (no key, a wrong or restricted key, over the limit) leaves no record behind."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.key_cache import KeyCache
from api.limits import RateLimiter
from api.middleware import claim_idempotency_key
from engine.api_keys import Caller, authenticate, hash_secret, require_full_access
from engine.db import transaction
from engine.dispatch import Dispatcher
from engine.runtime import Runtime


# The dependencies are coroutines: FastAPI runs a plain function in the thread pool, a hop
# that cost more than what these do. Only the work that may wait on I/O goes to a thread.
async def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def dispatcher(request: Request) -> Dispatcher:
    sender: Dispatcher = request.app.state.dispatcher
    return sender


def client_address(request: Request) -> str:
    """The peer's address (uvicorn puts a trusted proxy's X-Forwarded-For there)."""
    return request.client.host if request.client else "unknown"


def _bearer(request: Request) -> str | None:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


def _lookup(rt: Runtime, secret: str) -> Caller | None:
    settings_key = rt.settings.api_key.get_secret_value() if rt.settings.api_key else None
    with transaction(rt.sessions) as session:
        return authenticate(session, secret, settings_key=settings_key, now=rt.clock.now())


# Declares the scheme in the OpenAPI (Swagger UI's Authorize, generated clients); `any_key` parses.
bearer_key = HTTPBearer(auto_error=False, scheme_name="ApiKey", description="An API key")
Declared = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_key)]


async def any_key(request: Request, _declared: Declared) -> Caller:
    """The caller behind `Authorization: Bearer`, within its rate limit; else 401 or 429.

    Requests without a valid key are counted by client address; an address over its allowance
    gets 429 for any key not verified lately, before it is looked up: guessing is limited too.
    A key verified in the last second is answered from the cache without leaving the loop."""
    limiter: RateLimiter = request.app.state.rate_limiter
    address = client_address(request)
    secret = _bearer(request)
    found = None
    if secret is not None:
        cache: KeyCache = request.app.state.key_cache
        digest = hash_secret(secret)
        found = cache.fresh(digest)
        if found is None:
            rt: Runtime = request.app.state.runtime

            def lookup() -> Caller | None:
                limiter.peek_address(address).enforce()
                return _lookup(rt, secret)

            found = await run_in_threadpool(cache.resolve, digest, lookup)
    if found is None:
        headers = await run_in_threadpool(lambda: limiter.count_address(address).enforce())
        if secret is None:
            raise ApiError(
                401, "missing_api_key", "Missing API key in the authorization header", headers
            )
        raise ApiError(401, "invalid_api_key", "API key is invalid", headers)
    if limiter.active:  # state[HEADERS_STATE]
        request.state.ratelimit_headers = await run_in_threadpool(limiter.check_key, found.key_id)
    return found


async def sending_key(request: Request, caller: Annotated[Caller, Depends(any_key)]) -> Caller:
    """Any valid key: for the routes that send (events), which is all a sending key may do."""
    await claim_idempotency_key(request, caller)
    return caller


async def full_access_key(request: Request, caller: Annotated[Caller, Depends(any_key)]) -> Caller:
    """A full-access key; a sending key gets 401 `restricted_api_key`, as from Resend."""
    require_full_access(caller)
    await claim_idempotency_key(request, caller)
    return caller


async def refuse_before_body(request: Request) -> None:
    """Refuse a request as its route's key would, before its body is judged.

    FastAPI decodes a JSON body before it runs a route's dependencies: without this, a caller
    with no valid key (or a sending key, off the sending routes) would be told that its body is
    malformed instead of being refused, and its guesses would go uncounted."""
    route = request.scope.get("route")
    guards = _calls(route.dependant) if isinstance(route, APIRoute) else set()
    if full_access_key in guards:
        require_full_access(await any_key(request, None))
    elif sending_key in guards:
        await any_key(request, None)


def _calls(dependant: Dependant) -> set[object]:
    """Every dependency a route runs, at any depth."""
    found: set[object] = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= _calls(sub)
    return found


Rt = Annotated[Runtime, Depends(runtime)]
Authenticated = Annotated[Caller, Depends(full_access_key)]
Sending = Annotated[Caller, Depends(sending_key)]
Sender = Annotated[Dispatcher, Depends(dispatcher)]
