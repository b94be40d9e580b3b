"""The README's quick start, pasted as a newcomer pastes it: its own code blocks, run by bash.

(And docs/api.md's tour with curl, which says it runs as it is.)

In a folder of its own (a fresh clone's files the blocks use: the Makefile, the lock, the example)
whose `.venv` is this test run's venv, on a free port instead of 8000. The first terminal runs the
first two blocks (the venv, then `automations dev`, left running); the second terminal runs the
rest. It must end with a completed run and an email in the outbox.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import ROOT, answers, free_port
from tests.markdown import code_blocks, section
from tests.patience import patience

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# The files of the clone the quick start reads (make venv and the example).
CLONE_FILES = ("Makefile", "pyproject.toml", "constraints.txt")


def quick_start() -> list[str]:
    """The shell blocks of README.md's `## Quick start`, in order."""
    blocks = code_blocks(section((ROOT / "README.md").read_text(), "Quick start"))
    assert all(block.lang == "sh" for block in blocks)
    return [block.body for block in blocks]


def terminals() -> tuple[str, str]:
    """What the first terminal runs (up to `automations dev`) and what the second runs."""
    blocks = quick_start()
    (at,) = [i for i, block in enumerate(blocks) if block.strip() == "automations dev"]
    return "".join(blocks[: at + 1]), "".join(blocks[at + 1 :])


def on_port(script: str, port: int) -> str:
    script = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    return re.sub(r"^automations dev$", f"automations dev --port {port}", script, flags=re.M)


def shell_env(**extra: str) -> dict[str, str]:
    """A shell as a newcomer has it: no AUTOMATIONS_* setting, no venv on the PATH yet, and not
    inside `make` (under `make test VENV=.venv-ci`, VENV and MAKEFLAGS would reach the clone's
    own `make`)."""
    venv_bin = str(Path(sys.prefix) / "bin")
    inherited = ("AUTOMATIONS_", "VIRTUAL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
    # make also exports its command line's variables to what it runs (VENV=.venv-ci).
    ours = {"VENV", "PYTHON", "TEST_WORKERS"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited) and k not in ours}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return {**env, **extra}


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The clone's files the quick start uses, and this venv as its `.venv`, installed."""
    for name in CLONE_FILES:
        shutil.copy2(ROOT / name, tmp_path / name)  # keeps the times `make` compares
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    up_to_date = subprocess.run(["make", "-q", "venv"], cwd=tmp_path, env=shell_env(), check=False)
    if up_to_date.returncode != 0:
        pytest.fail(f"{sys.prefix} is not installed from this checkout's lock: run `make venv`")
    return tmp_path


@pytest.fixture
def first_terminal(clone: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    script = on_port(terminals()[0], port)
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=clone,
        env=shell_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process, port
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the README says
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def wait_until_ready(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + patience(60)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the first terminal ended early:\n{output}")
        if answers(f"http://127.0.0.1:{port}/ready"):
            return
        time.sleep(0.2)
    pytest.fail("automations dev did not answer in 60 s")


def completed_runs(url: str, key: str, automation_id: str) -> list[dict[str, object]]:
    """Poll the run the event started until it ends; the completed ones."""
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + patience(30)
    while True:
        runs = httpx.get(f"{url}/automations/{automation_id}/runs", headers=headers).json()
        data: list[dict[str, object]] = runs["data"]
        if data and all(run["status"] != "running" for run in data):
            return [run for run in data if run["status"] == "completed"]
        assert time.monotonic() < deadline, f"the run did not end in 30 s: {data}"
        time.sleep(0.2)


def test_the_quick_start_ends_with_a_completed_run_and_an_email(
    clone: Path, first_terminal: tuple[subprocess.Popen[str], int]
) -> None:
    process, port = first_terminal
    wait_until_ready(process, port)
    url = f"http://127.0.0.1:{port}"

    second = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", on_port(terminals()[1], port)],
        cwd=clone,
        env=shell_env(AUTOMATIONS_API_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert "Traceback" not in output and "error:" not in output, output
    assert "domain example.com is verified" in second.stdout

    key = (clone / "data" / "api-key").read_text().strip()
    automations = httpx.get(f"{url}/automations", headers={"Authorization": f"Bearer {key}"})
    (automation,) = automations.json()["data"]
    assert automation["name"] == "Welcome" and automation["status"] == "enabled"
    (run,) = completed_runs(url, key, automation["id"])
    emails = list((clone / "data" / "outbox").glob("*.eml"))
    assert len(emails) == 1, emails
    message = emails[0].read_text()
    assert "To: ada@example.com" in message and "Subject: Welcome, there!" in message

    # What the README says next: applying the same file again changes nothing.
    again = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "automations"), "apply", "examples/welcome.yaml"],
        cwd=clone,
        env=shell_env(AUTOMATIONS_API_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.stdout == f"unchanged {automation['id']}\n", again.stdout + again.stderr
    assert re.fullmatch(UUID, str(run["id"]))


def test_the_api_tour_with_curl_runs_as_it_is(
    clone: Path, first_terminal: tuple[subprocess.Popen[str], int]
) -> None:
    process, port = first_terminal
    wait_until_ready(process, port)
    page = (ROOT / "docs" / "api.md").read_text()
    (tour,) = code_blocks(section(page, "A tour with curl"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", on_port(tour.body, port)],
        cwd=clone,
        env=shell_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert '"status":"completed"' in last or '"status":"running"' in last, last
    key = (clone / "data" / "api-key").read_text().strip()
    (automation,) = httpx.get(
        f"http://127.0.0.1:{port}/automations", headers={"Authorization": f"Bearer {key}"}
    ).json()["data"]
    assert len(completed_runs(f"http://127.0.0.1:{port}", key, str(automation["id"]))) == 1
    assert len(list((clone / "data" / "outbox").glob("*.eml"))) == 1
