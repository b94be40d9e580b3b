"""`automations runs retry` and `runs replay` as an operator runs them, over real HTTP."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import uuid

import httpx
import pytest

from engine.bulk import parse_request, start_bulk
from engine.db import transaction
from models.enums import BulkAction
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import API_KEY, Stack
from tests.integration.test_cli_client import SCRIPT, UUID, Cli, cli, error_line, wait_runs

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)
__all__ = ["cli"]  # the fixture, shared with the client commands' tests

TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
# A condition on a field the events leave out: every run fails at `check`.
STEPS = [
    TRIGGER,
    {
        "key": "check",
        "type": "condition",
        "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
    },
    {"key": "pro", "type": "contact_update", "config": {"last_name": "Pro"}},
]
CONNECTIONS = [
    {"from": "start", "to": "check"},
    {"from": "check", "to": "pro", "type": "condition_met"},
]


def failed_runs(api: httpx.Client, stack: Stack, count: int) -> str:
    automation_id = str(make_automation(stack, STEPS, CONNECTIONS))
    for _ in range(count):
        body = {"event": "user.created", "email": unique_email("cli")}
        assert api.post("/events/send", json=body).status_code == 202
    wait_runs(stack, api, automation_id, failed=count)
    return automation_id


def test_retry_and_replay_one_run(cli: Cli, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = failed_runs(api, rt_stack, 1)
    (run,) = api.get(f"/automations/{automation_id}/runs").json()["data"]

    retried = cli("runs", "retry", automation_id, run["id"])
    assert retried.stdout == f"retried run {run['id']}: running\n"
    wait_runs(rt_stack, api, automation_id, failed=1)

    replayed = cli("runs", "replay", automation_id, run["id"], "--json")
    answer = json.loads(replayed.stdout)
    assert answer["object"] == "automation_run" and answer["replay_of"] == run["id"]
    wait_runs(rt_stack, api, automation_id, failed=2)


def test_bulk_retry_dry_run_then_wait(cli: Cli, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = failed_runs(api, rt_stack, 3)
    dry = cli(
        "runs",
        "retry",
        automation_id,
        "--status",
        "failed",
        "--error-code",
        "missing_field",
        "--dry-run",
    )
    assert dry.stdout.startswith("3 runs would be retried (dry run)\n")
    assert len(re.findall(UUID, dry.stdout)) == 3

    done = cli("runs", "retry", automation_id, "--step-key", "check", "--wait")
    assert re.fullmatch(
        rf"bulk retry ({UUID}): completed, matched 3, done 3, skipped 0, failed 0\n", done.stdout
    ), done.stdout
    wait_runs(rt_stack, api, automation_id, failed=3)
    runs = api.get(f"/automations/{automation_id}/runs").json()["data"]
    for run in runs:
        detail = api.get(f"/automations/{automation_id}/runs/{run['id']}").json()
        assert detail["retries"] == 1

    replay = cli("runs", "replay", automation_id, "--wait", "--json")
    assert json.loads(replay.stdout)["done"] == 3


def test_recovery_commands_fail_in_one_line(cli: Cli, api: httpx.Client, rt_stack: Stack) -> None:
    steps = [TRIGGER, {"key": "tag", "type": "contact_update", "config": {"last_name": "T"}}]
    automation_id = str(make_automation(rt_stack, steps, chain("start", "tag")))
    assert (
        api.post(
            "/events/send", json={"event": "user.created", "email": unique_email("ok")}
        ).status_code
        == 202
    )
    wait_runs(rt_stack, api, automation_id, completed=1)
    (run,) = api.get(f"/automations/{automation_id}/runs").json()["data"]

    completed = error_line(cli("runs", "retry", automation_id, run["id"], expect=1))
    assert "Run is completed" in completed and "run_not_retryable, HTTP 422" in completed
    both = error_line(cli("runs", "retry", automation_id, run["id"], "--dry-run", expect=2))
    assert "not both" in both
    bad = error_line(cli("runs", "retry", automation_id, "--status", "running", expect=1))
    assert "`status`" in bad
    unknown = error_line(cli("runs", "replay", str(uuid.uuid4()), expect=1))
    assert "Automation not found" in unknown


def test_a_wait_on_a_bulk_that_makes_no_progress_ends(
    cli: Cli, api: httpx.Client, rt_stack: Stack
) -> None:
    """No worker runs the bulk operation: --wait stops after --stall-seconds (exit 4) and says
    so; the operation goes on once a worker is back."""
    automation_id = failed_runs(api, rt_stack, 2)
    rt_stack.stop_worker()
    try:
        stalled = cli("runs", "retry", automation_id, "--wait", "--stall-seconds", "2", expect=4)
    finally:
        rt_stack.start_worker()
    line = error_line(stalled)
    assert re.fullmatch(
        rf"error: bulk retry {UUID}: running, matched 2, done 0, skipped 0, failed 0: no "
        rf"progress in 2 s; is a worker running\? The operation goes on: GET "
        rf"/automations/{automation_id}/runs/retries/{UUID} follows it",
        line,
    ), line
    bulk_id = re.findall(UUID, line)[0]
    rt_stack.wait_for(
        lambda: (
            api.get(f"/automations/{automation_id}/runs/retries/{bulk_id}").json()["status"]
            == "completed"
        ),
        what="the bulk operation to end once a worker runs",
    )


def test_a_wait_on_a_terminal_shows_the_counts_as_they_move(
    cli: Cli, api: httpx.Client, rt_stack: Stack
) -> None:
    """On a terminal --wait keeps one line of counts on stderr, cleared at the end; stdout
    holds the final line as in a script (whose stderr stays empty: the tests above)."""
    automation_id = failed_runs(api, rt_stack, 2)
    stdout, terminal, code = on_terminal(cli, "runs", "retry", automation_id, "--wait")
    assert code == 0, (stdout, terminal)
    assert re.fullmatch(
        rf"bulk retry {UUID}: completed, matched 2, done 2, skipped 0, failed 0\n", stdout
    ), stdout
    shown = [part for part in terminal.split("\r") if part.strip()]
    assert shown, repr(terminal)
    assert all(re.fullmatch(rf"bulk retry {UUID}: \w+, matched 2, .* *", p) for p in shown), shown
    assert terminal.endswith("\r") and not terminal.split("\r")[-2].strip(), repr(terminal)


def on_terminal(cli: Cli, *args: str) -> tuple[str, str, int]:
    """The command with its stderr on a pseudo-terminal: its stdout, what the terminal got,
    and its exit code."""
    assert SCRIPT is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
    env.update(AUTOMATIONS_API_URL=cli.base_url, AUTOMATIONS_API_KEY=API_KEY)
    main, side = pty.openpty()
    try:
        done = subprocess.run(
            [SCRIPT, *args],
            env=env,
            cwd=cli.cwd,
            stdout=subprocess.PIPE,
            stderr=side,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(side)
    received = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other side is closed: all was read
            break
        if not chunk:
            break
        received.append(chunk)
    os.close(main)
    return done.stdout, b"".join(received).decode(), done.returncode


def test_cancel_a_bulk_operation(cli: Cli, api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = failed_runs(api, rt_stack, 2)
    request = parse_request(uuid.UUID(automation_id), BulkAction.RETRY, {})
    with transaction(rt_stack.runtime.sessions) as session:  # its message lost: it runs on
        bulk_id = str(start_bulk(session, request, now=rt_stack.clock.now()).bulk.id)
    cancelled = cli("runs", "cancel-bulk", automation_id, bulk_id)
    assert cancelled.stdout == (
        f"bulk retry {bulk_id}: cancelled, matched 2, done 0, skipped 2, failed 0\n"
    )
    again = json.loads(cli("runs", "cancel-bulk", automation_id, bulk_id, "--json").stdout)
    assert (again["status"], again["skipped"]) == ("cancelled", 2)
    unknown = error_line(cli("runs", "cancel-bulk", automation_id, str(uuid.uuid4()), expect=1))
    assert "Bulk operation not found" in unknown, unknown
    wait_runs(rt_stack, api, automation_id, failed=2)  # left as they were
