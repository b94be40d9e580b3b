"""Processes import only what they need: `automations` starts one per command, and the tests
start hundreds of commands, workers and API servers.

Checked in processes of their own, since this one has imported everything already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.failures import ExitCode
from engine.settings import BAD_SETTINGS_EXIT

ROOT = Path(__file__).resolve().parents[2]
# The probes run with the defaults, whatever AUTOMATIONS_* variables this shell holds.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}

# Run in a fresh interpreter: the command's arguments, then the modules it had loaded at exit.
PROBE = """
import json, sys
from cli.main import app
try:
    app(sys.argv[1:], prog_name="automations")
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported_by(modules: str) -> list[str]:
    """What a fresh interpreter has loaded once it imported `modules` (comma-separated)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import json, sys, {modules}; print(json.dumps(sorted(sys.modules)))",
        ],
        cwd=ROOT,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return list(json.loads(done.stdout))


# What some commands need and most do not: the server runtime, the HTTP client, the settings,
# YAML, rich's tables, the graph's modules.
SERVER_SIDE = {"sqlalchemy", "alembic", "celery", "kombu", "uvicorn", "fastapi", "redis"}
CLIENT_SIDE = {"httpx", "yaml", "rich"}
ENGINE = {"pydantic_settings", "engine.settings", "engine.scenario", "engine.graph", "models"}


def loaded(modules: list[str], wanted: set[str]) -> set[str]:
    """Which of `wanted` (top-level packages or modules) are among `modules`."""
    return {name for name in wanted if name in modules}


def run_probe(*args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    answer = json.loads(done.stdout.splitlines()[-1])
    return answer["code"], answer["modules"]


def test_importing_the_command_loads_none_of_what_commands_need() -> None:
    modules = imported_by("cli.main")
    heavy = SERVER_SIDE | CLIENT_SIDE | ENGINE | {"pydantic", "importlib.metadata"}
    assert loaded(modules, heavy) == set()


@pytest.mark.parametrize(
    "args",
    [
        # Both refused by the command itself, before any request.
        ("list", "--after", "a", "--before", "b"),
        ("events", "send", "user.created"),
    ],
)
def test_a_client_command_loads_no_server_side_module(args: tuple[str, ...]) -> None:
    code, modules = run_probe(*args)
    assert code == ExitCode.BAD_INPUT
    assert loaded(modules, SERVER_SIDE | ENGINE) == set()


def test_a_server_command_loads_no_client_side_module() -> None:
    # Refused for its settings, which it has read: what it loaded is what it needs to start.
    code, modules = run_probe("worker", "--pool", "threads")
    assert code == ExitCode.BAD_INPUT
    assert loaded(modules, CLIENT_SIDE | {"engine.scenario"}) == set()


def test_bad_settings_exit_as_the_api_and_worker_processes_do() -> None:
    assert ExitCode.BAD_SETTINGS == BAD_SETTINGS_EXIT


def test_the_worker_and_the_api_server_load_httpx_only_for_resend() -> None:
    """Their email transport is most often SMTP: httpx is for the Resend transport alone."""
    assert loaded(imported_by("wiring.worker, wiring.server"), {"httpx"}) == set()


def test_a_data_dir_refused_by_dev_is_refused_before_the_server_is_imported(
    tmp_path: Path,
) -> None:
    """The refusal needs none of the embedded server's imports: a second of them came first."""
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    code, modules = run_probe("dev", "--port", "0", "--data-dir", str(taken))
    assert code == ExitCode.BAD_INPUT
    assert loaded(modules, SERVER_SIDE) == set()
