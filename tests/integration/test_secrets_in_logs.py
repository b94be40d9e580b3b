"""What the API server prints at DEBUG, on the normal path and on errors, read as an operator
reads it: no password of a URL, no secret key, no API key, no dashboard cookie or CSRF token,
no unsubscribe token, no contact's address."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from bench.children import ends_with_this_process
from engine.unsubscribe import make_token
from tests.integration.factories import (
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import API_KEY, ROOT, Stack, answers, free_port
from tests.integration.test_cli_server import automations
from tests.patience import patience

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

DB_PASSWORD = "db-password-in-the-url-7731"  # PostgreSQL trusts local connections: ignored
BROKER_PASSWORD = "broker-password-in-the-url-5519"
SMTP_PASSWORD = "smtp-password-in-the-url-9043"


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found[1]


class LoggedServer:
    """`automations api` at DEBUG, with passwords in every URL, its output kept."""

    def __init__(self, stack: Stack, log: Path) -> None:
        self.stack, self.log = stack, log
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        database = make_url(stack.settings.database_url).set(password=DB_PASSWORD)
        self.env = stack.env(
            AUTOMATIONS_API_KEY=API_KEY,
            AUTOMATIONS_LOG_LEVEL="DEBUG",
            AUTOMATIONS_DATABASE_URL=database.render_as_string(hide_password=False),
            AUTOMATIONS_BROKER_URL=f"redis://:{BROKER_PASSWORD}@127.0.0.1:{free_port()}/0",
            AUTOMATIONS_EMAIL_TRANSPORT_URL=f"smtp://ops:{SMTP_PASSWORD}@127.0.0.1:{free_port()}",
        )

    def __enter__(self) -> LoggedServer:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [automations(), "api", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                preexec_fn=ends_with_this_process(),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + patience(30)
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            if answers(self.base_url + "/health"):
                return self
            time.sleep(0.1)
        raise AssertionError(f"the API did not start: {self.log.read_text()}")

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)

    def printed(self) -> str:
        return self.log.read_text()


@pytest.fixture
def server(rt_stack: Stack, tmp_path: Path) -> Iterator[LoggedServer]:
    with LoggedServer(rt_stack, tmp_path / "api.log") as started:
        yield started


def test_the_api_prints_no_secret_at_debug(server: LoggedServer, rt_stack: Stack) -> None:
    secrets = {
        "database password": DB_PASSWORD,
        "broker password": BROKER_PASSWORD,
        "SMTP password": SMTP_PASSWORD,
        "secret key": rt_stack.settings.secret_key.get_secret_value(),
        "bootstrap API key": API_KEY,
    }
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=10) as api:
        contact = api.post("/contacts", json={"email": "logs@example.test"}).json()["id"]
        secrets["contact's address"] = "logs@example.test"
        assert api.get("/contacts/logs@example.test").status_code == 200
        assert api.get("/contacts/logs%40example.test").status_code == 200
        assert api.get("/contacts/nobody@example.test").status_code == 404
        secrets["unknown contact's address"] = "nobody@example.test"
        created = api.post("/api-keys", json={"name": "logged"}).json()["token"]
        secrets["created API key"] = created
        wrong = "re_" + uuid.uuid4().hex + uuid.uuid4().hex
        secrets["wrong API key"] = wrong
        assert api.get("/automations", headers={"Authorization": f"Bearer {wrong}"}).is_error
        assert api.get("/automations", headers={"Authorization": f"Bearer {created}"}).is_success
        # The broker cannot be reached: the event and its run are kept, the failure logged.
        steps = [
            {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
            {"key": "wait", "type": "delay", "config": {"duration": "1 hour"}},
        ]
        make_automation(rt_stack, steps, [{"from": "start", "to": "wait"}])
        sent = {"event": "user.created", "email": "logs@example.test"}
        assert api.post("/events/send", json=sent).status_code == 202
        assert api.get("/ready").status_code == 503
        token = make_token(uuid.UUID(contact), rt_stack.settings.secret_key.get_secret_value())
        secrets["unsubscribe token"] = token
        assert api.get(f"/unsubscribe/{token}").status_code == 200
        assert api.post(f"/unsubscribe/{token}").status_code == 200
    with httpx.Client(base_url=server.base_url, timeout=10) as browser:
        csrf = csrf_token(browser.get("/dashboard/login").text)
        secrets["CSRF token"] = csrf
        refused = browser.post("/dashboard/login", data={"csrf_token": csrf, "api_key": wrong})
        assert refused.status_code == 401
        csrf = csrf_token(browser.get("/dashboard/login").text)
        answer = browser.post("/dashboard/login", data={"csrf_token": csrf, "api_key": created})
        assert answer.status_code == 303
        secrets["dashboard cookie"] = browser.cookies["automations_dashboard"]
        assert browser.get("/dashboard/").status_code == 200
    time.sleep(0.5)  # the last access lines
    printed = server.printed()
    assert "not sent; the sweeper sends them" in printed  # the broker's failure was logged
    assert "/unsubscribe/***" in printed  # the access log is on, and was read
    assert "GET /contacts/*** HTTP/1.1" in printed
    leaked = [name for name, value in secrets.items() if value in printed]
    assert leaked == [], printed


def test_the_worker_prints_no_secret_when_a_send_fails(rt_stack: Stack) -> None:
    """The worker, with passwords in its database and SMTP URLs, fails to reach the SMTP
    server: the step's error and the worker's log name the server, never the password, and
    the email's unsubscribe link is nowhere in the log."""
    smtp = f"smtp://ops:{SMTP_PASSWORD}@127.0.0.1:{free_port()}"
    database = make_url(rt_stack.settings.database_url).set(password=DB_PASSWORD)
    log = rt_stack.workdir / f"worker-{rt_stack.backend}.log"
    rt_stack.restart_worker(
        AUTOMATIONS_DATABASE_URL=database.render_as_string(hide_password=False),
        AUTOMATIONS_EMAIL_TRANSPORT_URL=smtp,
    )
    start = log.stat().st_size
    try:
        make_domain(rt_stack)
        template = make_template(rt_stack)
        steps = [
            {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
            send_email_step("welcome", template),
        ]
        make_automation(rt_stack, steps, [{"from": "start", "to": "welcome"}])
        email = unique_email("logged")
        [run_id] = rt_stack.send("user.created", email).run_ids
        rt_stack.wait_for(
            lambda: rt_stack.steps(run_id)["welcome"].error is not None, what="the send to fail"
        )
        error = rt_stack.steps(run_id)["welcome"].error
        contact_id = rt_stack.run(run_id).contact_id
    finally:
        rt_stack.restart_worker()
    assert "refused the connection" in str(error) and SMTP_PASSWORD not in str(error)
    with log.open("rb") as lines:
        lines.seek(start)
        printed = lines.read().decode(errors="replace")
    assert "step pending until" in printed, printed  # the retry was logged
    secret = rt_stack.settings.secret_key.get_secret_value()
    for value in (DB_PASSWORD, SMTP_PASSWORD, secret, make_token(contact_id, secret)):
        assert value not in printed, printed


def test_the_worker_prints_no_address_when_a_server_refuses_it(rt_stack: Stack) -> None:
    """An SMTP server's refusal quotes the recipient, as real ones do: the step's error keeps
    it for the operator, the worker's log names the run and step instead."""
    log = rt_stack.workdir / f"worker-{rt_stack.backend}.log"
    start = log.stat().st_size
    make_domain(rt_stack)
    template = make_template(rt_stack)
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        send_email_step("welcome", template),
    ]
    make_automation(rt_stack, steps, [{"from": "start", "to": "welcome"}])
    email = unique_email("refused")
    rt_stack.sink.refuse(email, f"550 5.1.1 <{email}>: Recipient address rejected", times=1)
    [run_id] = rt_stack.send("user.created", email).run_ids
    assert rt_stack.wait_run(run_id).status == "failed"
    error = rt_stack.steps(run_id)["welcome"].error
    assert error is not None and email in error["message"]
    deadline = time.monotonic() + patience(10)
    while True:
        with log.open("rb") as lines:
            lines.seek(start)
            printed = lines.read().decode(errors="replace")
        if "Recipient address rejected" in printed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "<***>: Recipient address rejected" in printed, printed
    assert email not in printed, printed
