"""The settings a server command runs with: read from the environment, checked before it starts.

Each problem is one line naming the AUTOMATIONS_ variable (ExitCode.BAD_SETTINGS), never a
traceback from deep inside uvicorn or Celery once they have started.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cli.failures import ExitCode, fail, fail_settings

if TYPE_CHECKING:
    from engine.settings import Settings

# engine.settings (pydantic-settings) is imported when a server command reads its settings,
# not when `automations` starts: the client commands and --help never need it.


def read_settings() -> Settings:
    """The settings from the environment; an invalid one is one line, ExitCode.BAD_SETTINGS."""
    from pydantic import ValidationError

    from engine.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        fail_settings(exc)


@contextmanager
def refusing_bad_configuration() -> Iterator[None]:
    """Settings a process must not run with (production without a real secret key, say):
    one line naming the variable, ExitCode.BAD_SETTINGS."""
    from engine.settings import ConfigurationError

    try:
        yield
    except ConfigurationError as exc:
        fail(str(exc), ExitCode.BAD_SETTINGS)


def check_transport(settings: Settings) -> None:
    """AUTOMATIONS_EMAIL_TRANSPORT_URL (and its API key) name a transport we have."""
    from engine.runtime import transport_from_settings

    try:
        transport_from_settings(settings)
    except ValueError as exc:
        named = str(exc).startswith("AUTOMATIONS_")  # a message naming its own variable
        fail(
            str(exc) if named else f"AUTOMATIONS_EMAIL_TRANSPORT_URL: {exc}", ExitCode.BAD_SETTINGS
        )


def check_broker(settings: Settings) -> None:
    """AUTOMATIONS_BROKER_URL names a transport kombu has, and a port and a Redis database that
    are numbers (nothing is connected to): kombu would raise a ValueError inside Celery's start."""
    from kombu.transport import resolve_transport

    scheme = settings.broker_url.partition("://")[0] or "(none)"
    try:
        resolve_transport(scheme.partition("+")[0])  # `sqla+postgresql://`: kombu's `sqla`
    except (KeyError, ValueError, ImportError):
        fail(
            f"AUTOMATIONS_BROKER_URL: unknown broker transport {scheme!r} "
            "(expected e.g. redis://host:6379/0)",
            ExitCode.BAD_SETTINGS,
        )
    check_redis_url("AUTOMATIONS_BROKER_URL", settings.broker_url)
    _check_options("AUTOMATIONS_BROKER_URL", settings.broker_url, _kombu_connection)


def _kombu_connection(url: str) -> None:
    from kombu.connection import Connection

    Connection(url)  # type: ignore[no-untyped-call] # reads the query's options; connects not


def _redis_connection(url: str) -> None:
    import redis

    redis.ConnectionPool.from_url(url).make_connection()  # connects to nothing yet


def _check_options(variable: str, url: str, build: Callable[[str], None]) -> None:
    """The options in the URL's query are ones the client takes: each is passed on to it as a
    keyword, and one it does not know raised a TypeError as the process started."""
    if not urlsplit(url).query:
        return
    try:
        build(url)
    except (TypeError, ValueError) as exc:
        unknown = re.search(r"keyword argument '(\w+)'", str(exc))
        reason = f"its query holds an unknown option {unknown[1]!r}" if unknown else str(exc)
        fail(f"{variable}: {reason} (expected e.g. redis://host:6379/0)", ExitCode.BAD_SETTINGS)


def check_rate_limit_url(url: str) -> None:
    """AUTOMATIONS_RATE_LIMIT_REDIS_URL, which redis-py itself reads."""
    check_redis_url("AUTOMATIONS_RATE_LIMIT_REDIS_URL", url)
    _check_options("AUTOMATIONS_RATE_LIMIT_REDIS_URL", url, _redis_connection)


def check_redis_url(variable: str, url: str) -> None:
    """A port and, for Redis, a database that are numbers: redis-py and kombu would raise a
    ValueError from inside the server once started."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read for the ValueError of a port that is not one
    except ValueError as exc:  # urllib's: "Port out of range 0-65535", "Invalid IPv6 URL", ...
        # urllib quotes what it took for the port: with a `/` in the password, part of it.
        reason = str(exc) if "could not be cast" not in str(exc) else "the port is not a number"
        fail(
            f"{variable}: {reason} (expected e.g. redis://:password@host:6379/0; a password "
            "holding / # ? @ or : is written percent-encoded, / as %2F)",
            ExitCode.BAD_SETTINGS,
        )
    if parts.scheme in ("redis", "rediss") and not re.fullmatch(r"/?\d*", parts.path):
        fail(
            f"{variable}: the Redis database, after the port, is a number "
            "(expected e.g. redis://host:6379/0)",
            ExitCode.BAD_SETTINGS,
        )
