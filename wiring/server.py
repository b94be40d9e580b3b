"""The API server: the HTTP API, the dispatcher its messages go through, the dashboard."""

from __future__ import annotations

import sys

from fastapi import FastAPI

from api.app import create_app
from api.errors import AnswerUnexpected
from engine.after_commit import after_commit
from engine.dispatch import Dispatcher
from engine.logs import configure_logging
from engine.runtime import Runtime, create_runtime, settle_process
from engine.settings import BAD_SETTINGS_EXIT, ConfigurationError, Settings
from tasks.app import create_celery_app
from tasks.dispatcher import CeleryDispatcher
from web.routes import dashboard_app, unexpected_page


def create_server(
    settings: Settings, *, runtime: Runtime | None = None, dispatcher: Dispatcher | None = None
) -> FastAPI:
    """The API with the dashboard under /dashboard; messages go through Celery unless a
    dispatcher is given (the embedded executor, a test's)."""
    settings.check_production_ready()
    rt = runtime or create_runtime(settings)
    if dispatcher is None:
        dispatcher = CeleryDispatcher(create_celery_app(settings, runtime=rt))
    dispatcher = after_commit(dispatcher)  # one sender for the API and the dashboard
    app = create_app(settings, runtime=rt, dispatcher=dispatcher)
    dashboard = dashboard_app(rt, app.state.rate_limiter, dispatcher=dispatcher)
    dashboard.add_middleware(AnswerUnexpected, answer=unexpected_page)
    app.mount("/dashboard", dashboard)
    return app


def create() -> FastAPI:
    """For uvicorn, `uvicorn --factory wiring.server:create`: configured from AUTOMATIONS_*."""
    try:
        settings = Settings()
        # Under several workers (AUTOMATIONS_API_WORKERS) each is a new interpreter that
        # inherits no logging set-up from `automations api`: without this its logs are lost.
        configure_logging(json_lines=settings.log_json, level=settings.log_level)
        app = create_server(settings)
    except ConfigurationError as refused:
        # One line and no traceback, as from `automations api`.
        print(f"error: {refused}", file=sys.stderr)
        raise SystemExit(BAD_SETTINGS_EXIT) from None
    settle_process()
    return app
