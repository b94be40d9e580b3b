"""The server-side commands, run as an operator runs them: the installed `automations` script."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

import migrations
from bench.children import ends_with_this_process
from tests.integration.harness import ROOT, answers, free_port
from tests.patience import patience


def automations() -> str:
    found = shutil.which("automations", path=str(Path(sys.executable).parent))
    assert found, "the console script is installed by `pip install -e .`"
    return found


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [automations(), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
    env["AUTOMATIONS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env["AUTOMATIONS_EMAIL_TRANSPORT_URL"] = "console://"
    return env


def test_demo_runs_every_run_to_its_end(tmp_path: Path, sqlite_env: dict[str, str]) -> None:
    data = tmp_path / "demo"
    port = str(free_port())
    done = run(
        "demo",
        "--exit",
        "--port",
        port,
        "--data-dir",
        str(data),
        "--day-seconds",
        "1",
        env=sqlite_env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All runs finished" in done.stdout
    assert "dee skipped" in done.stdout
    assert len(list((data / "outbox").glob("*.eml"))) == 5
    assert "Traceback" not in done.stdout + done.stderr


def test_db_upgrade_then_keys_and_domains(sqlite_env: dict[str, str]) -> None:
    upgraded = run("db", "upgrade", env=sqlite_env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database at revision {migrations.head()}" in upgraded.stdout

    created = run("keys", "create", "ci", env=sqlite_env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("re_")

    missing = run("domains", "verify", "nowhere.test", env=sqlite_env)
    assert missing.returncode == 1
    assert "Domain `nowhere.test` not found" in missing.stderr
    bad_name = run("keys", "create", "", env=sqlite_env)
    assert bad_name.returncode == 2 and "name" in bad_name.stderr


def test_db_check_rollup_names_a_drift_and_repairs_it(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    assert run("db", "upgrade", env=sqlite_env).returncode == 0
    clean = run("db", "check-rollup", env=sqlite_env)
    assert clean.returncode == 0, clean.stderr
    assert "the rollup equals a recount of every run and step" in clean.stdout
    automation, hour = uuid.uuid4(), 490_000
    database = sqlite3.connect(tmp_path / "cli.sqlite3")
    with database:  # three completed runs the runs table never had
        database.execute(
            "INSERT INTO run_rollups (automation_id, span, hour, shard, completed) "
            "VALUES (?, 1, ?, 2, 3)",
            (automation.hex, hour),
        )
    database.close()

    drifted = run("db", "check-rollup", env=sqlite_env)

    assert drifted.returncode == 4
    start = dt.datetime.fromtimestamp(hour * 3600, dt.UTC)
    assert drifted.stdout.splitlines() == [
        f"run_rollups automation {automation} hour {start:%Y-%m-%d %H}:00 UTC: "
        "completed kept 3, recounted 0"
    ]
    assert drifted.stderr.startswith("error: 1 rollup counter(s) differ from a recount;")
    later = run(
        "db", "check-rollup", "--since", f"{start + dt.timedelta(days=1):%Y-%m-%d}", env=sqlite_env
    )
    assert later.returncode == 0, later.stderr
    assert (
        f"recount of the runs and steps since {start + dt.timedelta(days=1):%Y-%m-%d} UTC"
        in later.stdout
    )
    assert run("db", "check-rollup", "--since", f"{start:%Y-%m-%d}", env=sqlite_env).returncode == 4
    for bad, message in (("yesterday", "Invalid value for '--since'"), ("0001-01-01", "1970")):
        refused = run("db", "check-rollup", "--since", bad, env=sqlite_env)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    repaired = run("db", "check-rollup", "--repair", env=sqlite_env)
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired 1 rollup counter(s) to their recount" in repaired.stdout
    again = run("db", "check-rollup", env=sqlite_env)
    assert again.returncode == 0 and "equals a recount" in again.stdout
    assert "Traceback" not in drifted.stderr + repaired.stderr


def test_dev_serves_the_api_with_its_key_until_stopped(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [automations(), "dev", "--port", str(port), "--data-dir", str(tmp_path / "dev")],
        env=sqlite_env,
        cwd=ROOT,
        preexec_fn=ends_with_this_process(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        umask=0o022,  # what a user's shell commonly has: files readable by every user
    )
    try:
        deadline = time.monotonic() + patience(30)
        while time.monotonic() < deadline and not answers(f"http://127.0.0.1:{port}/ready"):
            time.sleep(0.2)
        key = (tmp_path / "dev" / "api-key").read_text().strip()
        answer = httpx.get(
            f"http://127.0.0.1:{port}/automations", headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 200 and answer.json()["data"] == []
        # Its key and its database (contacts, emails, unsubscribe links) are the user's alone.
        for name in ("api-key", "automations.sqlite3", "automations.sqlite3-wal"):
            assert (tmp_path / "dev" / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert f"http://127.0.0.1:{port}/dashboard" in output


def test_bad_configuration_is_one_line_not_a_traceback(sqlite_env: dict[str, str]) -> None:
    env = {**sqlite_env, "AUTOMATIONS_COUNTDOWN_HORIZON_SECONDS": "-1"}
    result = run("db", "upgrade", env=env)
    assert result.returncode == 5
    assert result.stderr.startswith("error: invalid configuration")
    assert len(result.stderr.splitlines()) == 1
