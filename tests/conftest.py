"""Shared fixtures: real services, or a loud failure in CI when one is missing."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_URL = os.environ.get(
    "AUTOMATIONS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AUTOMATIONS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip locally when a service is down; in CI (CI=true) fail instead, never skip."""
    if service_up(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: integration tests must not skip)")
    pytest.skip(message)


def require_url(name: str, url: str) -> None:
    """`require_service` for the host and port of a database or Redis URL (the configured one)."""
    address = urlsplit(url.replace("+psycopg", ""))
    default = 5432 if address.scheme.startswith("postgres") else 6379
    require_service(name, address.hostname or "127.0.0.1", address.port or default)


# The shared stacks (PostgreSQL, SQLite, embedded; the API server). Imported here, at the root of
# the tests, so every folder uses the same session fixtures rather than its own copy.
from tests.stacks import api, api_server, rt_stack, smtp_sink, stack  # noqa: E402, F401
