"""The FastAPI app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

from api.access_log import hide_tokens_in_access_log
from api.deps import refuse_before_body
from api.docs import DOCS_URL, mount_docs
from api.errors import ERROR_RESPONSES, AnswerUnexpected, install_error_handlers
from api.event_groups import EventGroups
from api.key_cache import KeyCache
from api.limits import BodySizeLimit, RateLimiter, RateLimitHeaders
from api.middleware import install_idempotency
from api.operator_access import Guarded, OperatorAccess
from api.routes import ROUTERS
from api.security_headers import SecurityHeaders
from engine.after_commit import after_commit
from engine.dispatch import Dispatcher
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings, check_url_port

# At shutdown, the longest the API waits for its queued messages to be sent.
SHUTDOWN_FLUSH_SECONDS = 5.0

DESCRIPTION = """A durable automation runtime that speaks Resend's API: automations, runs,
events, contacts, segments, templates and domains. Authenticate with `Authorization: Bearer <key>`.
A `sending_access` key may only send events; every other route answers it 401
`restricted_api_key`.
"""


def create_app(
    settings: Settings, *, dispatcher: Dispatcher, runtime: Runtime | None = None
) -> FastAPI:
    """The HTTP API bound to these settings, sending its messages through `dispatcher`.

    wiring/server.py gives it the Celery dispatcher and mounts the dashboard beside it.
    """
    settings.check_production_ready()
    hide_tokens_in_access_log()
    rt = runtime or create_runtime(settings)
    # A request is answered by its commit: a send that fails is logged and left to the
    # sweeper, not answered 500 to a caller who would send the request again, and no request
    # waits behind another's send or for a broker known to be down (engine/after_commit.py).
    sender = after_commit(dispatcher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # Stopping: what is queued goes out now rather than in `stale_after_seconds`.
        await run_in_threadpool(sender.flush, SHUTDOWN_FLUSH_SECONDS)

    docs = settings.docs_enabled
    app = FastAPI(
        lifespan=lifespan,
        title="Automations API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/openapi.json" if docs else None,
        # FastAPI's own pages load Swagger UI from a CDN: api/docs.py serves it locally.
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = rt
    app.state.dispatcher = sender
    app.state.key_cache = KeyCache()
    # POST /events/send: events arriving together share a transaction (api/event_groups.py).
    app.state.event_groups = EventGroups(rt, sender)
    app.state.ping_broker = sender.ping
    redis_url = settings.rate_limit_redis_url or (
        settings.broker_url if settings.broker_url.startswith("redis") else None
    )
    if settings.rate_limit_redis_url:
        check_url_port("AUTOMATIONS_RATE_LIMIT_REDIS_URL", settings.rate_limit_redis_url)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, redis_url)
    install_error_handlers(app, refuse_before_body)
    install_idempotency(app, rt)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(OperatorAccess, guarded=_guarded(app, settings))
    app.add_middleware(AnswerUnexpected)  # inside SecurityHeaders: its 500 gets them too
    app.add_middleware(SecurityHeaders)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    if docs:
        mount_docs(app)
    return app


def _guarded(app: FastAPI, settings: Settings) -> list[Guarded]:
    def token(value: SecretStr | None) -> str:
        return value.get_secret_value() if value else ""

    docs = (app.openapi_url, DOCS_URL) if app.openapi_url else ()
    return [
        Guarded(
            ("/metrics",),
            token(settings.metrics_token),
            "AUTOMATIONS_METRICS_TOKEN",
            'Bearer realm="metrics"',
        ),
        Guarded(
            docs,
            token(settings.docs_token),
            "AUTOMATIONS_DOCS_TOKEN",
            'Basic realm="API documentation", charset="UTF-8"',
        ),
    ]
