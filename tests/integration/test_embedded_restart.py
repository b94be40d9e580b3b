"""`automations dev` killed and started again on its data dir, as an operator does it: the runs go
on at once, and a data dir belongs to one process at a time."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench.children import ends_with_this_process
from tests.integration.harness import ROOT, SSL_CONTEXT, answers, free_port
from tests.integration.test_cli_server import automations
from tests.patience import patience

WELCOME = {"template": {"alias": "welcome"}}


class Dev:
    """One `automations dev` process on a data dir."""

    def __init__(self, data: Path, **env: str) -> None:
        self.data = data
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
        command = ["dev", "--threads", "1", "--port", str(self.port), "--data-dir", str(data)]
        self.process = subprocess.Popen(
            [automations(), *command],
            env={**self.env, **env},
            cwd=ROOT,
            preexec_fn=ends_with_this_process(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def ready(self) -> Dev:
        deadline = time.monotonic() + patience(60)  # a start takes seconds; more on a busy machine
        while time.monotonic() < deadline and self.process.poll() is None:
            if answers(f"{self.url}/ready"):
                return self
            time.sleep(0.1)
        raise AssertionError(f"dev did not start: {self.stop()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        key = (self.data / "api-key").read_text().strip()
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
            verify=SSL_CONTEXT,
        )

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        output, _ = self.process.communicate(timeout=30)
        return output


@pytest.fixture
def started() -> Iterator[list[Dev]]:
    processes: list[Dev] = []
    yield processes
    for dev in processes:
        if dev.process.poll() is None:
            dev.process.kill()
        dev.process.communicate(timeout=10)


def load_two_welcomes(api: httpx.Client) -> None:
    """A verified domain, a published template and two automations that send it on one event."""
    domain = api.post("/domains", json={"name": "example.com"}).raise_for_status().json()["id"]
    api.post(f"/domains/{domain}/verify").raise_for_status()
    template = {"name": "W", "alias": "welcome", "from": "Acme <hello@example.com>"}
    api.post("/templates", json={**template, "subject": "Hi", "html": "<p>hi</p>"})
    api.post("/templates/welcome/publish").raise_for_status()
    for name in ("A", "B"):
        steps = [
            {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
            {"key": "welcome", "type": "send_email", "config": WELCOME},
        ]
        graph = {"steps": steps, "connections": [{"from": "start", "to": "welcome"}]}
        body = {"name": name, "status": "enabled", **graph}
        api.post("/automations", json=body).raise_for_status()


def send_fatal(api: httpx.Client, event: str, email: str) -> None:
    """Send an event whose run kills the process: answered 202, or not answered at all when the
    kill came before the answer was written. Either way the event is stored: the executor starts
    a run's steps only once its ingestion has committed."""
    try:
        sent = api.post("/events/send", json={"event": event, "email": email})
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return  # the server died mid-request: its commit came first (above)
    assert sent.status_code == 202, sent.text


def run_statuses(data: Path) -> list[str]:
    with sqlite3.connect(data / "automations.sqlite3") as database:
        return [row[0] for row in database.execute("SELECT status FROM runs ORDER BY status")]


def message_ids(outbox: Path) -> dict[str, list[str]]:
    """Each email id of the outbox, with the Message-ID of each of its files."""
    found: dict[str, list[str]] = {}
    for path in sorted(outbox.glob("*.eml")):
        header = next(
            line for line in path.read_text().splitlines() if line.startswith("Message-ID:")
        )
        found.setdefault(path.name.split(".", 1)[0], []).append(header)
    return found


@pytest.mark.parametrize("point", ["send_email.before_send", "send_email.after_send"])
def test_a_restart_resumes_the_runs_a_kill_left_at_once(
    tmp_path: Path, started: list[Dev], point: str
) -> None:
    """Killed while one run sends and the other's step waits in the in-process queue: on the
    next start both end within seconds, not after the lease (120 s) or the stale delay (30 s);
    the email the kill interrupted goes out once, or a second time under its Message-ID when
    the kill came after the file was written (the SMTP window, docs/durability.md)."""
    data = tmp_path / "dev"
    first = Dev(data, AUTOMATIONS_FAULT_INJECTION=f"{point}=kill@{tmp_path / 'killed'}")
    started.append(first)
    with first.ready().client() as api:
        load_two_welcomes(api)
        # One thread: run A's send kills the process while run B's send is still queued.
        send_fatal(api, "user.created", "a@example.com")
    assert first.process.wait(timeout=30) == -signal.SIGKILL
    assert run_statuses(data) == ["running", "running"]

    second = Dev(data)
    started.append(second)
    second.ready()
    deadline = time.monotonic() + patience(15)
    while run_statuses(data) != ["completed", "completed"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_statuses(data) == ["completed", "completed"]
    emails = message_ids(data / "outbox")
    assert len(emails) == 2
    copies = sorted(len(headers) for headers in emails.values())
    assert copies == ([1, 1] if point.endswith("before_send") else [1, 2])
    assert all(len(set(headers)) == 1 for headers in emails.values())
    assert "Traceback" not in second.stop()


def test_a_data_dir_serves_one_process_at_a_time(tmp_path: Path, started: list[Dev]) -> None:
    """A second dev on a data dir in use is refused in one line, and a demo is refused before
    it wipes the dir; once the first stops, the dir is free again."""
    data = tmp_path / "dev"
    first = Dev(data)
    started.append(first)
    with first.ready().client() as api:
        load_two_welcomes(api)
    key = (data / "api-key").read_text()

    second = Dev(data)
    started.append(second)
    output, _ = second.process.communicate(timeout=30)
    assert second.process.returncode == 2, output
    assert output.splitlines() == [
        f"error: --data-dir {data} is in use by another automations process "
        f"(pid {first.process.pid}): stop it, or pass another --data-dir"
    ]
    demo = subprocess.run(
        [automations(), "demo", "--exit", "--port", str(free_port()), "--data-dir", str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo.returncode == 2, demo.stdout + demo.stderr
    assert "is in use by another automations process" in demo.stderr
    assert (data / "api-key").read_text() == key
    with first.client() as api:
        assert len(api.get("/automations").raise_for_status().json()["data"]) == 2

    assert "Traceback" not in first.stop()
    third = Dev(data)
    started.append(third)
    with third.ready().client() as api:
        assert len(api.get("/automations").raise_for_status().json()["data"]) == 2


def test_a_data_dir_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    """A file given as --data-dir, or a file on its path, is named as such, not "File exists"."""
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    for data in (taken, taken / "dev"):
        for command in (["dev"], ["demo", "--exit"]):
            done = subprocess.run(
                [automations(), *command, "--port", str(free_port()), "--data-dir", str(data)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert (done.returncode, done.stdout, done.stderr.splitlines()) == (
                2,
                "",
                [
                    f"error: cannot use --data-dir {data}: it, or a folder on its path, is a "
                    "file: give a folder"
                ],
            ), (command, data)
    assert taken.read_text() == "not a folder"


def start_until_one_lives(
    data: Path, started: list[Dev], ended: Callable[[], bool], **env: str
) -> tuple[Dev, int]:
    """Start dev on `data` again after each death, as a supervisor does, until a start lives
    on with `ended()` true: that start, and how many died before it."""
    for deaths in range(8):
        dev = Dev(data, **env)
        started.append(dev)
        deadline = time.monotonic() + patience(60)
        while dev.process.poll() is None and not ended():
            assert time.monotonic() < deadline, "neither killed nor ended"
            time.sleep(0.2)
        if dev.process.poll() is None:
            return dev.ready(), deaths
        assert dev.process.returncode == -signal.SIGKILL, dev.stop()
    raise AssertionError("killed at each of 8 starts")


# AUTOMATIONS_STEP_MAX_WORKER_LOSSES for the tests of a step that kills every start: below the
# default 3, since each death is a start of seconds, yet above 1, so that a start takes over a
# death already counted and "after the bound" is a count kept across starts, not the first death.
BOUND = 2
LOW_BOUND = {"AUTOMATIONS_STEP_MAX_WORKER_LOSSES": str(BOUND)}


# Up to 8 starts of a process, each a few seconds on a busy machine.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("point", ["send_email.handler", "send_email.before_send"])
def test_a_send_that_kills_the_process_at_every_start_fails_after_the_bound(
    tmp_path: Path, started: list[Dev], point: str
) -> None:
    """The embedded executor dies whole: each start's takeover of the claim a dead process
    held counts that death, and after the bound the step fails instead of killing the next
    start. The same whether it dies rendering the email (its claim committed first) or
    sending it."""
    data = tmp_path / "dev"
    kills = {"AUTOMATIONS_FAULT_INJECTION": f"{point}=kill", **LOW_BOUND}
    first = Dev(data, **kills)
    started.append(first)
    with first.ready().client() as api:
        load_two_welcomes(api)
        send_fatal(api, "user.created", "a@example.com")
    assert first.process.wait(timeout=30) == -signal.SIGKILL

    # One thread: each start claims one of the two sends and dies on it, so two runs need
    # four deaths in all; then a start fails both steps and lives.
    dev, deaths = start_until_one_lives(
        data, started, lambda: run_statuses(data) == ["failed", "failed"], **kills
    )
    assert deaths == 2 * BOUND - 1
    assert run_statuses(data) == ["failed", "failed"]
    assert "Traceback" not in dev.stop()
    with sqlite3.connect(data / "automations.sqlite3") as database:
        steps = database.execute(
            "SELECT worker_losses, json_extract(error, '$.code') FROM run_steps "
            "WHERE step_key = 'welcome'"
        ).fetchall()
    assert steps == [(BOUND, "worker_lost"), (BOUND, "worker_lost")]
    assert list((data / "outbox").glob("*.eml")) == []


def load_welcome_and_plan_change(api: httpx.Client) -> str:
    """A welcome email on `user.created`, and on `plan.changed` an update of the contact (the
    instant step the tests' fault kills): the id of the second automation."""
    load_two_welcomes(api)
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "plan.changed"}},
        {"key": "rename", "type": "contact_update", "config": {"first_name": "Changed"}},
    ]
    graph = {"steps": steps, "connections": [{"from": "start", "to": "rename"}]}
    body = {"name": "Plan", "status": "enabled", **graph}
    return str(api.post("/automations", json=body).raise_for_status().json()["id"])


def steps_of(data: Path, key: str) -> list[tuple[str, int, str | None]]:
    with sqlite3.connect(data / "automations.sqlite3") as database:
        return database.execute(
            "SELECT status, worker_losses, json_extract(error, '$.code') FROM run_steps "
            "WHERE step_key = ?",
            (key,),
        ).fetchall()


@pytest.mark.timeout(300)
def test_an_instant_step_that_kills_the_process_at_every_start_fails_after_the_bound(
    tmp_path: Path, started: list[Dev]
) -> None:
    """An instant step dies with the whole process, as a send does: its claim is committed
    before it runs, so each start counts the death its predecessor left, and after the bound
    the step fails, its run with it, and the process stays up for the other runs. An operator
    retry, once the cause is gone, resumes the step with the count reset."""
    data = tmp_path / "dev"
    kills = {"AUTOMATIONS_FAULT_INJECTION": "contact_update.handler=kill", **LOW_BOUND}
    first = Dev(data, **kills)
    started.append(first)
    with first.ready().client() as api:
        plan = load_welcome_and_plan_change(api)
        # Two welcome runs in flight beside the poison: each start may send them or die first.
        api.post("/events/send", json={"event": "user.created", "email": "w@example.com"})
        send_fatal(api, "plan.changed", "a@example.com")
    assert first.process.wait(timeout=30) == -signal.SIGKILL

    dev, deaths = start_until_one_lives(
        data, started, lambda: [s for s, *_ in steps_of(data, "rename")] == ["failed"], **kills
    )
    assert deaths == BOUND - 1
    assert steps_of(data, "rename") == [("failed", BOUND, "worker_lost")]
    with dev.client() as api:
        sent = api.post("/events/send", json={"event": "user.created", "email": "b@example.com"})
        assert sent.status_code == 202
        deadline = time.monotonic() + patience(15)
        while run_statuses(data).count("completed") < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        (run,) = api.get(f"/automations/{plan}/runs").raise_for_status().json()["data"]
    assert run_statuses(data) == ["completed"] * 4 + ["failed"]
    emails = message_ids(data / "outbox")
    assert sorted(len(headers) for headers in emails.values()) == [1, 1, 1, 1]
    assert "Traceback" not in dev.stop()

    fixed = Dev(data)
    started.append(fixed)
    key = (data / "api-key").read_text().strip()
    retried = subprocess.run(
        [automations(), "runs", "retry", plan, run["id"], "--api-url", fixed.ready().url],
        env={**fixed.env, "AUTOMATIONS_API_KEY": key},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert retried.stdout == f"retried run {run['id']}: running\n"
    deadline = time.monotonic() + patience(15)
    while run_statuses(data) != ["completed"] * 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert steps_of(data, "rename") == [("completed", 0, None)]
    assert "Traceback" not in fixed.stop()


@pytest.mark.parametrize(
    ("event", "point", "key"),
    [
        ("plan.changed", "contact_update.handler", "rename"),
        ("user.created", "send_email.before_send", "welcome"),
    ],
)
def test_a_stop_in_the_middle_of_a_step_ends_the_step_and_counts_no_death(
    tmp_path: Path, started: list[Dev], event: str, point: str, key: str
) -> None:
    """SIGTERM (a supervisor's stop, Ctrl-C) while a step runs: the process ends the step and
    then exits, as a Celery worker's warm shutdown does, and its next start counts no death."""
    data = tmp_path / "dev"
    dev = Dev(data, AUTOMATIONS_FAULT_INJECTION=f"{point}=sleep@2")
    started.append(dev)
    with dev.ready().client() as api:
        load_welcome_and_plan_change(api)
        api.post("/events/send", json={"event": event, "email": "a@example.com"})
    deadline = time.monotonic() + patience(15)
    while ("running", 0, None) not in steps_of(data, key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("running", 0, None) in steps_of(data, key)
    dev.process.terminate()
    output, _ = dev.process.communicate(timeout=30)
    assert dev.process.returncode == 0, output
    assert "Traceback" not in output
    assert ("completed", 0, None) in steps_of(data, key)

    again = Dev(data)
    started.append(again)
    again.ready()
    deadline = time.monotonic() + patience(15)
    while "running" in run_statuses(data) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(run_statuses(data)) == {"completed"}
    with sqlite3.connect(data / "automations.sqlite3") as database:
        assert database.execute("SELECT sum(worker_losses) FROM run_steps").fetchone() == (0,)
    assert "Traceback" not in again.stop()
