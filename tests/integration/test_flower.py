"""Flower, started by our CLI against the test broker, sees the worker and a step task by name.

The worker is started as an operator starts it (`automations worker`, prefork or solo), with task
events off by default: Flower turns them on remotely, and only then does it hear of the step
tasks."""

from __future__ import annotations

import ast
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.children import ends_with_this_process
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack, free_port
from tests.integration.markers import POSTGRES_ONLY
from tests.integration.test_compose import automations, stop
from tests.patience import patience

pytestmark = POSTGRES_ONLY

USER, PASSWORD = "ops", "flower-test-password-of-32-bytes-or-more"
TASK = "automations.steps.contact_update"


# Both pools an operator may run (cli/server.py POOLS): one prefork child, or one solo process,
# whose control commands (Flower's enable_events) are heard between tasks.
POOL_ARGS = {"prefork": ("--concurrency", "1"), "solo": ("--pool", "solo")}


@pytest.fixture(params=sorted(POOL_ARGS))
def cli_worker(rt_stack: Stack, request: pytest.FixtureRequest) -> Iterator[tuple[str, set[str]]]:
    """`automations worker` in place of the stack's worker: its pool, the names that answer a
    ping."""
    assert rt_stack.settings.task_events is False
    rt_stack.stop_worker()
    log = (rt_stack.workdir / "cli-worker.log").open("wb")
    worker = subprocess.Popen(
        [automations(), "worker", *POOL_ARGS[request.param]],
        cwd=rt_stack.workdir,
        preexec_fn=ends_with_this_process(),
        env=rt_stack.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        replies: list[dict[str, Any]] = []

        def pinged() -> bool:
            # A ping to every worker waits out its timeout: the names are those that answered.
            replies[:] = rt_stack.app.control.ping(timeout=0.5)
            return bool(replies)

        rt_stack.wait_for(pinged, timeout=30)
        names = {name for reply in replies for name in reply}
        yield request.param, names
    finally:
        # The stack's worker boots while this one finishes its warm shutdown (the SIGTERM that
        # `stop` would send, then its wait).
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            rt_stack.start_worker()
        finally:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            log.close()


def test_flower_lists_the_worker_and_a_step_task_that_succeeded(
    rt_stack: Stack, cli_worker: tuple[str, set[str]]
) -> None:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "tag", "type": "contact_update", "config": {"properties": {"seen": True}}},
    ]
    make_automation(rt_stack, steps, chain("start", "tag"))
    pool, workers_pinged = cli_worker
    assert workers_pinged, "the worker answers a ping"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in rt_stack.env().items() if not k.startswith("FLOWER_")}
    log = rt_stack.workdir / "flower.log"
    with log.open("wb") as out:
        flower = subprocess.Popen(
            [automations(), "flower", "--port", str(port), "--basic-auth", f"{USER}:{PASSWORD}"],
            cwd=rt_stack.workdir,
            preexec_fn=ends_with_this_process(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=url, auth=(USER, PASSWORD), timeout=10) as client:
            wait_for_http(flower, client, log.name)
            assert httpx.get(url + "/api/workers", timeout=5).status_code == 401

            # Flower hears only events sent after its receiver is connected and after it has
            # turned task events on (every 5 s): send events until a step task shows up.
            task, run_id = find_step_task(
                rt_stack, client, flower, deadline=time.monotonic() + patience(30)
            )
            assert task["name"] == TASK and task["state"] == "SUCCESS", task
            worker_log = (rt_stack.workdir / "cli-worker.log").read_text(errors="replace")
            assert "Events of group {task} enabled by remote" in worker_log
            worker_name = task["worker"]
            assert worker_name in workers_pinged
            if pool == "solo":  # a name of its own beside other solo workers
                assert worker_name.startswith("solo-"), worker_name
            assert ast.literal_eval(task["kwargs"]) == {"run_id": str(run_id), "step_key": "tag"}

            workers = client.get("/api/workers", params={"refresh": "1"})
            assert workers.status_code == 200, workers.text
            assert worker_name in workers.json()
            registered = workers.json()[worker_name]["registered"]
            assert "automations.steps.send_email" in registered and TASK in registered
    finally:
        stop(flower)
    assert "Traceback" not in log.read_text(errors="replace")


def wait_for_http(flower: subprocess.Popen[bytes], client: httpx.Client, log: str) -> None:
    deadline = time.monotonic() + patience(30)
    while time.monotonic() < deadline:
        assert flower.poll() is None, f"flower exited early, see {log}"
        try:
            if client.get("/api/workers").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"flower did not answer in 30 s, see {log}")


def find_step_task(
    stack: Stack, client: httpx.Client, flower: subprocess.Popen[bytes], *, deadline: float
) -> tuple[dict[str, Any], uuid.UUID]:
    while time.monotonic() < deadline:
        assert flower.poll() is None, "flower exited"
        (run_id,) = stack.send("user.created", unique_email("flower")).run_ids
        assert stack.wait_run(run_id).status == "completed"
        for _ in range(15):
            answer = client.get("/api/tasks", params={"taskname": TASK})
            assert answer.status_code == 200, answer.text
            for task in answer.json().values():
                if str(run_id) in (task.get("kwargs") or "") and task.get("state") == "SUCCESS":
                    return task, run_id
            time.sleep(0.2)
    raise AssertionError(f"Flower never listed a {TASK} task that succeeded")
