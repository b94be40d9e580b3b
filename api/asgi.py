"""Entry point for uvicorn: `uvicorn --factory api.asgi:create`."""

from fastapi import FastAPI

from api.app import create_app
from engine.settings import Settings


def create() -> FastAPI:
    """The app, configured from the AUTOMATIONS_* environment."""
    return create_app(Settings())
