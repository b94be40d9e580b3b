"""Entry point for uvicorn: `uvicorn --factory api.asgi:create`."""

import sys

from fastapi import FastAPI

from api.app import create_app
from engine.settings import BAD_SETTINGS_EXIT, ConfigurationError, Settings


def create() -> FastAPI:
    """The app, configured from the AUTOMATIONS_* environment."""
    try:
        return create_app(Settings())
    except ConfigurationError as refused:
        # One line and no traceback, as from `automations api`.
        print(f"error: {refused}", file=sys.stderr)
        raise SystemExit(BAD_SETTINGS_EXIT) from None
