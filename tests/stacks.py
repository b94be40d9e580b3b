"""The real stacks the integration and browser tests share: registered once, from tests/conftest.py,
so that one session never runs two workers with two clocks on one broker."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import POSTGRES_URL, REDIS_URL, require_url
from tests.integration.harness import ApiServer, SmtpSink, Stack, build_stack


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


# SQLite files of the stacks go to a memory file system when the machine has one with room
# (a container's /dev/shm may have 64 MB): their commits still call fsync (synchronous=FULL),
# which costs nothing there instead of about 1 ms each. Locking and WAL behave as on a disk.
MEMORY_FS = Path("/dev/shm")
MEMORY_FS_ROOM = 1 << 30


def sqlite_folder(workdir: Path) -> Path:
    """A fresh folder for a stack's SQLite database: in MEMORY_FS if usable, else `workdir`."""
    try:
        if shutil.disk_usage(MEMORY_FS).free >= MEMORY_FS_ROOM:
            return Path(tempfile.mkdtemp(prefix="automations-test-", dir=MEMORY_FS))
    except OSError:
        pass  # none, or not writable
    return workdir


@pytest.fixture(scope="session", params=["postgres", "sqlite", "embedded"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, smtp_sink: SmtpSink
) -> Iterator[Stack]:
    require_url("Redis", REDIS_URL)
    workdir = tmp_path_factory.mktemp(f"stack-{request.param}")
    folder = workdir
    if request.param == "postgres":
        require_url("PostgreSQL", POSTGRES_URL)
        database_url = POSTGRES_URL
    else:
        folder = sqlite_folder(workdir)
        database_url = f"sqlite:///{folder / 'automations.sqlite3'}"
    built = build_stack(request.param, database_url, REDIS_URL, workdir, smtp_sink)
    redis.Redis.from_url(REDIS_URL).flushdb()
    built.start_worker()
    yield built
    built.stop_worker()
    # The embedded executor sends through this process's transport, which keeps its SMTP
    # connection to the sink open; Celery's worker_process_init keeps the runtime alive to the
    # end, so unclosed, the socket would be reported after the summary.
    built.runtime.transport.close()
    built.runtime.sessions.kw["bind"].dispose()
    if folder != workdir:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def rt_stack(stack: Stack) -> Stack:
    """The stack with an empty database, for one test."""
    stack.reset_database()
    return stack


@pytest.fixture(scope="session")
def api_server(stack: Stack) -> Iterator[ApiServer]:
    server = ApiServer(stack)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(rt_stack: Stack, api_server: ApiServer) -> Iterator[httpx.Client]:
    """An authenticated HTTP client on a live API server over an empty database."""
    with api_server.client() as client:
        yield client
