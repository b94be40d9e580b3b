"""The FastAPI app factory."""

from __future__ import annotations

from fastapi import FastAPI

from api.deps import KeyCache
from api.errors import ERROR_RESPONSES, install_error_handlers
from api.limits import BodySizeLimit, RateLimiter
from api.middleware import IdempotencyMiddleware
from api.routes import ROUTERS
from engine.dispatch import Dispatcher
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings
from web.routes import dashboard_app

DESCRIPTION = """A durable automation runtime that speaks Resend's API: automations, runs,
events, contacts, segments, templates and domains. Authenticate with `Authorization: Bearer <key>`.
"""


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    dispatcher: Dispatcher | None = None,
) -> FastAPI:
    """The HTTP API bound to these settings; the runtime and dispatcher may be injected."""
    settings.check_production_ready()
    rt = runtime or create_runtime(settings)
    if dispatcher is None:
        from tasks.app import create_celery_app
        from tasks.dispatcher import CeleryDispatcher

        dispatcher = CeleryDispatcher(create_celery_app(settings, runtime=rt))
    app = FastAPI(
        title="Automations API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = rt
    app.state.dispatcher = dispatcher
    app.state.key_cache = KeyCache()
    app.state.ping_broker = dispatcher.ping
    redis_url = settings.rate_limit_redis_url or (
        settings.broker_url if settings.broker_url.startswith("redis") else None
    )
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, redis_url)
    install_error_handlers(app)
    app.add_middleware(IdempotencyMiddleware, runtime=rt)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    app.mount("/dashboard", dashboard_app(rt, dispatcher=dispatcher))
    return app
