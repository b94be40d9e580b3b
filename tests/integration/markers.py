"""Which stacks a test needs."""

import pytest

# Tests that need a broker and a Celery worker process (kills, a wiped broker db, producers).
CELERY_BACKENDS = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
# Tests that force interleavings PostgreSQL allows, or that speak HTTP to one server.
POSTGRES_ONLY = pytest.mark.parametrize("stack", ["postgres"], indirect=True)
