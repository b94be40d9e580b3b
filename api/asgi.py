"""Entry point for uvicorn: `uvicorn --factory api.asgi:create`."""

import sys

from fastapi import FastAPI

from api.app import create_app
from engine.logs import configure_logging
from engine.settings import BAD_SETTINGS_EXIT, ConfigurationError, Settings


def create() -> FastAPI:
    """The app, configured from the AUTOMATIONS_* environment."""
    try:
        settings = Settings()
        # Under several workers (AUTOMATIONS_API_WORKERS) each is a new interpreter that
        # inherits no logging set-up from `automations api`: without this its logs are lost.
        configure_logging(json_lines=settings.log_json, level=settings.log_level)
        return create_app(settings)
    except ConfigurationError as refused:
        # One line and no traceback, as from `automations api`.
        print(f"error: {refused}", file=sys.stderr)
        raise SystemExit(BAD_SETTINGS_EXIT) from None
