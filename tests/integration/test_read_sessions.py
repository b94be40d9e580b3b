"""The read sessions of the API's GETs and the dashboard's pages: on PostgreSQL each statement
is its own transaction (no BEGIN and COMMIT round trips around a request's reads), a statement
that would write is refused before it is sent, and the runtime's other sessions keep their
transactions and may write."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session

from engine import api_keys, db
from models.tables import Contact
from tests.integration.factories import (
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack, serving
from wiring.server import create_server


def clock_readings(session: Session) -> tuple[object, object]:
    """now() twice, 10 ms apart: the same inside one transaction, not across two."""
    first = session.execute(text("SELECT now()")).scalar_one()
    time.sleep(0.01)
    return first, session.execute(text("SELECT now()")).scalar_one()


def test_reads_are_a_transaction_each_and_writes_keep_theirs(pooled: Engine) -> None:
    sessions = db.create_session_factory(pooled)
    with db.reads(db.create_read_session_factory(sessions)) as session:
        first, second = clock_readings(session)
        assert first != second
    with db.transaction(sessions) as session:
        first, second = clock_readings(session)
        assert first == second


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TEMPORARY TABLE scratch (n int)",
        "  update contacts SET first_name = 'x' WHERE false",
        "DELETE FROM contacts WHERE false",
        "SET LOCAL statement_timeout = 1",
    ],
)
def test_a_read_session_refuses_a_statement_that_writes(pooled: Engine, statement: str) -> None:
    read_sessions = db.create_read_session_factory(db.create_session_factory(pooled))
    with db.reads(read_sessions) as session, pytest.raises(db.WriteWhileReading) as refused:
        session.execute(text(statement))
    assert statement.strip()[:20] in str(refused.value)


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_a_read_session_refuses_an_insert_however_it_is_written(rt_stack: Stack) -> None:
    read_sessions = rt_stack.runtime.read_sessions
    row = {"id": uuid.uuid4(), "email": f"{uuid.uuid4().hex}@example.test"}
    with db.reads(read_sessions) as session, pytest.raises(db.WriteWhileReading):
        session.execute(insert(Contact).values(**row))
    with db.reads(read_sessions) as session:
        assert session.get(Contact, row["id"]) is None


def test_the_check_is_on_the_read_sessions_only(pooled: Engine) -> None:
    """The guard is an event of the read engine alone: the runtime's writes do not pay for it."""
    sessions = db.create_session_factory(pooled)
    db.create_read_session_factory(sessions)
    with db.transaction(sessions) as session:
        session.execute(text("CREATE TEMPORARY TABLE scratch (n int)"))
        session.execute(text("INSERT INTO scratch VALUES (1)"))


def test_sqlite_reads_in_its_transactions(tmp_path: Path) -> None:
    engine = db.create_db_engine(f"sqlite:///{tmp_path}/reads.db")
    try:
        sessions = db.create_session_factory(engine)
        assert db.create_read_session_factory(sessions) is sessions
    finally:
        engine.dispose()


@contextmanager
def statements_by_engine(stack: Stack) -> Iterator[Counter[str]]:
    """How many statements the runtime's engine sent while this is open, and how many of them
    came through the read sessions' engine (which shares the pool and its events)."""
    seen: Counter[str] = Counter()
    runtime_engine = stack.runtime.sessions.kw["bind"]
    read_engine = stack.runtime.read_sessions.kw["bind"]
    assert read_engine is not runtime_engine

    def sent(*_: object) -> None:
        seen["all"] += 1

    def read(*_: object) -> None:
        seen["read"] += 1

    event.listen(runtime_engine, "before_cursor_execute", sent)
    event.listen(read_engine, "before_cursor_execute", read)
    try:
        yield seen
    finally:
        event.remove(read_engine, "before_cursor_execute", read)
        event.remove(runtime_engine, "before_cursor_execute", sent)


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_dashboard_pages_read_through_the_read_sessions(rt_stack: Stack) -> None:
    """Every page checks the sign-in and reads without a transaction; a form's change still
    writes in one; a session signed out is refused by a page's read."""
    stack = rt_stack
    make_domain(stack)
    template = make_template(stack)
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "reads.page"}},
        send_email_step("hello", template),
    ]
    automation = make_automation(stack, steps, [{"from": "start", "to": "hello"}])
    run = stack.send("reads.page", unique_email("reads")).run_ids[0]
    with db.transaction(stack.runtime.sessions) as session:
        _, secret = api_keys.create_api_key(session, name="pages", now=stack.clock.now())
    app = create_server(stack.settings, runtime=stack.runtime, dispatcher=stack.dispatcher)
    pages = [
        "/dashboard/",
        f"/dashboard/automations/{automation}",
        f"/dashboard/automations/{automation}/runs",
        f"/dashboard/automations/{automation}/metrics",
        f"/dashboard/automations/{automation}/runs/{run}",
        f"/dashboard/automations/{automation}/runs/retry",
        f"/dashboard/automations/{automation}/simulate",
    ]
    with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        token = csrf_token(client.get("/dashboard/login").text)
        signed = client.post("/dashboard/login", data={"csrf_token": token, "api_key": secret})
        assert signed.status_code == 303
        for path in pages:
            with statements_by_engine(stack) as seen:
                shown = client.get(path)
            assert shown.status_code == 200, (path, shown.text[:300])
            assert seen["read"] > 0 and seen["read"] == seen["all"], (path, seen)
        token = csrf_token(client.get(f"/dashboard/automations/{automation}").text)
        with statements_by_engine(stack) as seen:
            changed = client.post(
                f"/dashboard/automations/{automation}/status",
                data={"csrf_token": token, "status": "disabled"},
            )
        assert changed.status_code == 303
        assert seen["all"] > seen["read"] == 0, seen
        assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 303
        client.cookies.set(*signed_out_cookie(signed))
        refused = client.get("/dashboard/")
        assert refused.status_code == 303 and "/dashboard/login" in refused.headers["location"]


def signed_out_cookie(signed_in: httpx.Response) -> tuple[str, str]:
    """The cookie the sign-in set, to be sent again after signing out (a stolen copy)."""
    name, _, value = signed_in.headers["set-cookie"].split(";")[0].partition("=")
    return name, value
