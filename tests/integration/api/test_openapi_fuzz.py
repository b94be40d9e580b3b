"""Property-based fuzzing of every endpoint from /openapi.json (schemathesis, bounded)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.db import transaction
from engine.sweeper_health import record_tick
from tests.integration.harness import API_KEY, ApiServer, Stack
from tests.patience import patience

# Bounded for the suite; a longer search for bugs: AUTOMATIONS_FUZZ_EXAMPLES=200
# AUTOMATIONS_FUZZ_SEED=<another> pytest tests/integration/api/test_openapi_fuzz.py
MAX_EXAMPLES = int(os.environ.get("AUTOMATIONS_FUZZ_EXAMPLES", "15"))
SEED = int(os.environ.get("AUTOMATIONS_FUZZ_SEED", "20261128"))
TICK_SECONDS = 5  # well within the sweeper's lateness bound (a minute)

# The suite's two minutes, and more for more examples (62 operations: about a second each).
TIMEOUT = 120 + 1.5 * max(0, MAX_EXAMPLES - 15)

pytestmark = [
    pytest.mark.parametrize("stack", ["postgres"], indirect=True),
    pytest.mark.timeout(TIMEOUT),
]


def schemathesis_command() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    return [found]


@contextlib.contextmanager
def sweeper_ticking(stack: Stack) -> Iterator[None]:
    """A sweeper that ticks every few seconds, as in a running deployment: GET /health/sweeper
    answers 200 however long the fuzz runs (its 503 for a late sweeper is the answer it exists
    for, tested in test_operations_api)."""
    stop = threading.Event()

    def tick() -> None:
        with transaction(stack.runtime.sessions) as session:
            record_tick(session, stack.clock.now())

    def ticking() -> None:
        while not stop.wait(TICK_SECONDS):
            tick()

    tick()
    ticker = threading.Thread(target=ticking, name="sweeper-ticks", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()


def test_no_server_errors_and_answers_match_the_schema(rt_stack, api_server: ApiServer) -> None:  # type: ignore[no-untyped-def]
    with sweeper_ticking(rt_stack):
        result = fuzz(api_server)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report


def fuzz(api_server: ApiServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *schemathesis_command(),
            "run",
            f"{api_server.base_url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance,response_headers_conformance",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--header",
            f"Authorization: Bearer {API_KEY}",
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
            "--seed",
            str(SEED),
        ],
        capture_output=True,
        text=True,
        timeout=patience(TIMEOUT),
        check=False,
    )
