"""The fault lab: our own Redis server, our own database, three workers (one solo, two prefork);
built once."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from bench.faultlab.lab import Lab
from bench.faultlab.report import Result, table
from tests.conftest import IN_CI, POSTGRES_URL, require_service

DATABASE = os.environ.get("AUTOMATIONS_FAULTS_DATABASE", "faults")
RESULTS: list[Result] = []


def lab_prerequisites() -> None:
    """Skip (fail in CI) unless PostgreSQL is up and redis-server can be started."""
    url = make_url(POSTGRES_URL)
    require_service("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed: the fault tests run their own Redis"
        if IN_CI:
            pytest.fail(message + " (CI=true: fault tests must not skip)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab_prerequisites()
    built = Lab(tmp_path_factory.mktemp("faults"), POSTGRES_URL, DATABASE)
    yield built
    built.close()


@pytest.fixture
def results() -> list[Result]:
    return RESULTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.write_sep("-", "fault injection")
        terminalreporter.write_line(table(RESULTS))
