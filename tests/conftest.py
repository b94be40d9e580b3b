"""Shared fixtures: real services, or a loud failure in CI when one is missing."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.patience import VARIABLE, factor

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Under pytest-xdist (`make test` runs three processes), worker N > 0 gets a database and a Redis
# database of its own beside the configured ones: `test_gw1`, Redis db + 1, and so on.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
CONFIGURED_POSTGRES_URL = os.environ.get(
    "AUTOMATIONS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CONFIGURED_REDIS_URL = os.environ.get("AUTOMATIONS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A PostgreSQL commit of the tests (this process, and the workers, API servers and commands it
# starts, which inherit the environment) returns before the server has flushed its WAL to disk:
# about 0.2 ms instead of 3 ms here, over the tens of thousands of commits of a session. What a
# commit makes visible, and when, is unchanged; only a crash of the PostgreSQL server itself,
# which no test causes, could lose the last ones. (libpq reads PGOPTIONS at every connection.)
os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c synchronous_commit=off".strip()
# Measured once here, in the session's first process, and inherited by its xdist workers and
# what they start (tests/patience.py).
PATIENCE = factor()


def for_worker(postgres_url: str, redis_url: str, worker: int) -> tuple[str, str]:
    """The database and Redis URLs of xdist worker `worker` (0: the configured ones)."""
    if worker == 0:
        return postgres_url, redis_url
    postgres = urlsplit(postgres_url)
    redis_address = urlsplit(redis_url)
    redis_db = int(redis_address.path.strip("/") or 0) + worker
    return (
        urlunsplit(postgres._replace(path=f"{postgres.path}_gw{worker}")),
        urlunsplit(redis_address._replace(path=f"/{redis_db}")),
    )


POSTGRES_URL, REDIS_URL = for_worker(CONFIGURED_POSTGRES_URL, CONFIGURED_REDIS_URL, WORKER)


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


def require_binary(name: str, package: str | None = None) -> str:
    """A program's path, on PATH or in /usr/sbin (Debian's daemons); `require_service`'s skip
    or failure if it is not installed."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found is None:
        message = f"{name} is not installed" + (f" (Debian package {package})" if package else "")
        if IN_CI:
            pytest.fail(message + " (CI=true: integration tests must not skip)")
        pytest.skip(message)
    return found


def require_url(name: str, url: str) -> None:
    """`require_service` for the host and port of a database or Redis URL (the configured one)."""
    address = urlsplit(url.replace("+psycopg", ""))
    default = 5432 if address.scheme.startswith("postgres") else 6379
    require_service(name, address.hostname or "127.0.0.1", address.port or default)


@contextmanager
def scratch_postgres(suffix: str, *, create: bool = True) -> Iterator[str]:
    """The URL of a PostgreSQL database of the test's own, `<configured name>_<suffix>`,
    dropped before and after the test; created empty, or left missing if not `create`."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    require_url("PostgreSQL", POSTGRES_URL)
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_{suffix}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    drop = text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    try:
        with admin.connect() as conn:
            conn.execute(drop)
            if create:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(drop)
    finally:
        admin.dispose()


# -- tiers -------------------------------------------------------------------------------------

HERE = Path(__file__).resolve().parent
TIERS = ("unit", "engine", "integration", "e2e", "faults")


def pytest_report_header() -> str:
    return (
        f"patience: waits and timeouts x{PATIENCE:g} on this host ({VARIABLE}, tests/patience.py)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test gets the marker of its folder's tier (registered in pyproject.toml)."""
    for item in items:
        tier = Path(str(item.path)).resolve().relative_to(HERE).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(
                f"{item.nodeid}: tests live in one of tests/{{{','.join(TIERS)}}}"
            )
        item.add_marker(getattr(pytest.mark, tier))
        if PATIENCE > 1:
            # The test's own timeout, or the suite's, stretched alike: the closest marker wins.
            own = item.get_closest_marker("timeout")
            seconds = own.args[0] if own is not None else float(config.getini("timeout"))
            item.add_marker(pytest.mark.timeout(seconds * PATIENCE), append=False)
        if tier == "faults":
            # One fault lab (its database, its Redis, its workers) for the tier: one xdist worker.
            item.add_marker(pytest.mark.xdist_group("faults"))


# -- the sandbox -------------------------------------------------------------------------------


def sentinel_url(url: str, databases: int = 1) -> str:
    """The same Redis server, a database outside the `databases` ones from the URL's (the
    configured one and the xdist workers' after it): 15, or 11 or below when they reach 15 (12 is
    the benches', bench/__init__.py)."""
    address = urlsplit(url)
    first = int(address.path.strip("/") or 0)
    chosen = 15 if first + databases <= 15 else min(11, first - 1)
    return urlunsplit(address._replace(path=f"/{chosen}"))


@pytest.fixture(scope="session", autouse=True)
def worker_database() -> None:
    """An xdist worker's own PostgreSQL database, created beside the configured one if missing."""
    if POSTGRES_URL == CONFIGURED_POSTGRES_URL:
        return
    address = urlsplit(POSTGRES_URL.replace("+psycopg", ""))
    if not service_up(address.hostname or "127.0.0.1", address.port or 5432):
        return  # the tests that need it skip or fail with the reason
    import psycopg

    name = address.path.strip("/")
    with psycopg.connect(CONFIGURED_POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture(scope="session", autouse=True)
def other_redis_databases_untouched() -> Iterator[None]:
    """A key planted in another Redis database survives the session: tests flush only their own."""
    address = urlsplit(REDIS_URL)
    if not service_up(address.hostname or "127.0.0.1", address.port or 6379):
        yield  # no Redis, nothing of it to guard (the tests that need it skip or fail)
        return
    sentinel = sentinel_url(CONFIGURED_REDIS_URL, WORKERS)
    client = redis.Redis.from_url(sentinel)
    key, token = f"automations:test-sentinel:{uuid.uuid4()}", uuid.uuid4().hex
    try:
        client.set(key, token, ex=24 * 3600)
        yield
        survived = client.get(key) == token.encode()
        client.delete(key)
        if not survived:
            pytest.fail(
                f"the sentinel key in {sentinel} is gone: a test flushed a Redis "
                f"database other than its own {REDIS_URL} (FLUSHALL?)"
            )
    finally:
        client.close()


# The shared stacks (PostgreSQL, SQLite, embedded; the API server). Imported here, at the root of
# the tests, so every folder uses the same session fixtures rather than its own copy.
from tests.stacks import api, api_server, rt_stack, smtp_sink, stack  # noqa: E402, F401
