"""In production, every process refuses a short or placeholder secret key before it starts: the
API (uvicorn, `automations api`), the worker and the scheduler (celery, `automations worker`,
`automations scheduler`), Flower, and the embedded `automations dev` and `demo`. One line on
stderr, exit status 5 (bad settings), no traceback, and nothing reached: the broker URL points
nowhere. Flower also refuses to serve without a login."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import MIN_SECRET_BYTES, PLACEHOLDER_SECRET
from tests.integration.harness import ROOT, free_port

BIN = Path(sys.executable).parent


def commands(tmp: Path) -> dict[str, list[str]]:
    port = str(free_port())
    data = ["--data-dir", str(tmp / "data")]
    return {
        "uvicorn": [str(BIN / "uvicorn"), "--factory", "wiring.server:create", "--port", port],
        "celery worker": [str(BIN / "celery"), "-A", "wiring.worker", "worker"],
        "celery beat": [str(BIN / "celery"), "-A", "wiring.worker", "beat"],
        "automations api": [str(BIN / "automations"), "api", "--port", port],
        "automations worker": [str(BIN / "automations"), "worker"],
        "automations scheduler": [str(BIN / "automations"), "scheduler"],
        "automations flower": [str(BIN / "automations"), "flower", "--port", port],
        "automations dev": [str(BIN / "automations"), "dev", "--port", port, *data],
        "automations demo": [str(BIN / "automations"), "demo", "--port", port, *data],
    }


SHORT = "s" * (MIN_SECRET_BYTES - 1)
CASES = [(process, SHORT) for process in commands(Path("/tmp"))] + [
    # The placeholder, where it was once let through: the worker started with it.
    (process, PLACEHOLDER_SECRET)
    for process in ("uvicorn", "celery worker", "celery beat", "automations worker")
]


def refused(process: str, secret: str, tmp_path: Path) -> list[str]:
    """Run `process` in production with this secret key; its stderr lines, once it has exited
    with ExitCode.BAD_SETTINGS and no traceback."""
    env = {
        "AUTOMATIONS_ENV": "production",
        "AUTOMATIONS_SECRET_KEY": secret,
        "AUTOMATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'never.sqlite3'}",
        "AUTOMATIONS_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    printed, lines = bad_settings(process, env, tmp_path)
    assert SHORT not in printed
    return lines


def bad_settings(process: str, given: dict[str, str], tmp_path: Path) -> tuple[str, list[str]]:
    """Run `process` with these settings over none of ours from the environment, expecting
    ExitCode.BAD_SETTINGS without a traceback: all it printed, and its stderr lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMATIONS_", "FLOWER_"))}
    result = subprocess.run(
        commands(tmp_path)[process],
        cwd=ROOT,
        env=env | given,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 5, (result.stdout, result.stderr)  # ExitCode.BAD_SETTINGS
    printed = result.stdout + result.stderr
    assert "Traceback" not in printed
    return printed, [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(("process", "secret"), CASES)
def test_a_weak_secret_stops_the_process_with_one_line(
    process: str, secret: str, tmp_path: Path
) -> None:
    lines = refused(process, secret, tmp_path)
    assert len(lines) == 1 and "AUTOMATIONS_SECRET_KEY" in lines[0], lines
    assert not (tmp_path / "data").exists() and not (tmp_path / "never.sqlite3").exists()


def test_flower_without_a_login_is_refused_outside_development(tmp_path: Path) -> None:
    lines = refused("automations flower", "k" * MIN_SECRET_BYTES, tmp_path)
    assert len(lines) == 1 and "FLOWER_BASIC_AUTH" in lines[0] and "--no-auth" in lines[0]


@pytest.mark.parametrize(
    ("process", "variable"),
    [
        ("uvicorn", "AUTOMATIONS_BROKER_URL"),
        ("celery worker", "AUTOMATIONS_BROKER_URL"),
        ("celery beat", "AUTOMATIONS_BROKER_URL"),
        ("uvicorn", "AUTOMATIONS_RATE_LIMIT_REDIS_URL"),
    ],
)
def test_a_password_holding_a_slash_is_not_printed(
    process: str, variable: str, tmp_path: Path
) -> None:
    """Started without the CLI's checks, kombu's and redis-py's tracebacks quoted the "port"
    they read: the password up to its `/`."""
    env = {
        "AUTOMATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'never.sqlite3'}",
        "AUTOMATIONS_BROKER_URL": "redis://127.0.0.1:1/0",
        "AUTOMATIONS_RATE_LIMIT_PER_SECOND": "5",
        variable: "redis://:hun/ter2@127.0.0.1:1/0",
    }
    printed, lines = bad_settings(process, env, tmp_path)
    assert "hun" not in printed and "ter2" not in printed
    assert len(lines) == 1 and variable in lines[0], lines


@pytest.mark.parametrize("process", ["uvicorn", "automations api", "automations dev"])
def test_a_short_metrics_token_stops_the_process_with_one_line(
    process: str, tmp_path: Path
) -> None:
    """Nothing limits guesses at /metrics: a token shorter than the secrets' 32 bytes is refused
    as the process starts, in one line naming the variable and the rule, never the token."""
    env = {
        "AUTOMATIONS_ENV": "production",
        "AUTOMATIONS_SECRET_KEY": "k" * MIN_SECRET_BYTES,
        "AUTOMATIONS_METRICS_TOKEN": "scrape-me-please",
        "AUTOMATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'never.sqlite3'}",
        "AUTOMATIONS_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    printed, lines = bad_settings(process, env, tmp_path)
    assert "scrape-me-please" not in printed
    assert len(lines) == 1 and "AUTOMATIONS_METRICS_TOKEN" in lines[0], lines
    assert f"at least {MIN_SECRET_BYTES} bytes" in lines[0]
    assert not (tmp_path / "data").exists() and not (tmp_path / "never.sqlite3").exists()


@pytest.mark.parametrize(
    "logins",
    ["ops:flower-test-password", "ops", f"ops:{'p' * MIN_SECRET_BYTES},ci:flower-test-password"],
)
def test_a_short_flower_password_is_refused_outside_development(
    logins: str, tmp_path: Path
) -> None:
    """Flower limits no guesses at its logins: each password is held to the secrets' length,
    as the tokens of /metrics and the docs are."""
    env = {
        "AUTOMATIONS_ENV": "production",
        "AUTOMATIONS_SECRET_KEY": "k" * MIN_SECRET_BYTES,
        "AUTOMATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'never.sqlite3'}",
        "AUTOMATIONS_BROKER_URL": "redis://127.0.0.1:1/0",
        "FLOWER_BASIC_AUTH": logins,
    }
    printed, lines = bad_settings("automations flower", env, tmp_path)
    assert "flower-test-password" not in printed and "p" * MIN_SECRET_BYTES not in printed
    assert len(lines) == 1 and "FLOWER_BASIC_AUTH" in lines[0], lines
    assert f"at least {MIN_SECRET_BYTES} bytes" in lines[0]
