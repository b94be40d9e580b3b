"""Property-based fuzzing of every endpoint from /openapi.json (schemathesis, bounded)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.db import transaction
from engine.sweeper_health import record_tick
from tests.integration.harness import API_KEY, ApiServer

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

MAX_EXAMPLES = int(os.environ.get("AUTOMATIONS_FUZZ_EXAMPLES", "15"))


def schemathesis_command() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    return [found]


def test_no_server_errors_and_answers_match_the_schema(rt_stack, api_server: ApiServer) -> None:  # type: ignore[no-untyped-def]
    # A sweeper that just ticked: GET /health/sweeper answers 200, as in a running deployment
    # (its 503 for a late sweeper is the answer it exists for, tested in test_operations_api).
    with transaction(rt_stack.runtime.sessions) as session:
        record_tick(session, rt_stack.clock.now())
    result = subprocess.run(
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
            "20261128",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
