"""Fixtures shared by the integration tests of the database layer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from engine import db
from tests.conftest import POSTGRES_URL, require_url


@pytest.fixture
def pooled() -> Iterator[Engine]:
    """The runtime's PostgreSQL engine, with a pool of one connection."""
    require_url("PostgreSQL", POSTGRES_URL)
    engine = db.create_db_engine(POSTGRES_URL, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()
