"""PostgreSQL behind PgBouncer in transaction mode (AUTOMATIONS_DATABASE_POOLING=transaction):
a real PgBouncer (Debian's), a real worker and API server through it, and `db upgrade` refused.

Such a pooler hands each transaction to whichever server connection is free. psycopg prepares a
statement it has run a few times on its connection (`_pg3_0`, ...), on the server session it
had then: through the pooler, another client's statement of the same name later meets it there,
or a client's own is gone. So the setting turns prepared statements off."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bench.children import ends_with_this_process
from engine.db import create_db_engine, transaction
from models.tables import Run
from tests.conftest import POSTGRES_URL, require_binary, require_url
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import API_KEY, ApiServer, Stack, free_port
from tests.integration.markers import POSTGRES_ONLY
from tests.integration.test_cli_server import automations
from tests.patience import patience

CONFIG = """\
[databases]
* = host={host} port={port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
auth_type = trust
auth_file = {users}
pool_mode = transaction
unix_socket_dir =
; the tests' PGOPTIONS (tests/conftest.py): PgBouncer refuses a startup parameter it does not know
ignore_startup_parameters = options
max_client_conn = 200
default_pool_size = 20
"""


@pytest.fixture(scope="module")
def pooler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PgBouncer in transaction mode in front of the tests' PostgreSQL server: its URL, for
    the tests' database."""
    require_url("PostgreSQL", POSTGRES_URL)
    binary = require_binary("pgbouncer", "pgbouncer")
    folder = tmp_path_factory.mktemp("pgbouncer")
    server = make_url(POSTGRES_URL)
    port = free_port()
    users = folder / "users.txt"
    users.write_text(f'"{server.username or "postgres"}" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        CONFIG.format(
            host=server.host or "127.0.0.1", port=server.port or 5432, listen=port, users=users
        )
    )
    # It refuses to run as root; started as root, it reads its files, then becomes nobody.
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    log = (folder / "pgbouncer.log").open("ab")
    process = subprocess.Popen(
        [binary, *as_user, str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=ends_with_this_process(),
    )
    try:
        deadline = time.monotonic() + patience(10)
        while not listening(port):
            assert process.poll() is None, (folder / "pgbouncer.log").read_text()
            assert time.monotonic() < deadline, "PgBouncer did not listen"
            time.sleep(0.05)
        yield server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def statements_through(url: str, *, prepared_statements: bool) -> None:
    """The same statement, many times, from three connections taking turns."""
    db_engine = create_db_engine(url, prepared_statements=prepared_statements)
    try:
        connections = [db_engine.connect() for _ in range(3)]
        for n in range(30):
            connection = connections[n % 3]
            connection.execute(text("SELECT CAST(:n AS integer) + 1"), {"n": n})
            connection.commit()
        for connection in connections:
            connection.close()
    finally:
        db_engine.dispose()


def test_prepared_statements_break_behind_a_transaction_pooler_and_the_setting_avoids_them(
    pooler: str,
) -> None:
    with pytest.raises(DBAPIError, match="prepared statement"):
        statements_through(pooler, prepared_statements=True)
    statements_through(pooler, prepared_statements=False)


@POSTGRES_ONLY
def test_worker_and_api_run_automations_through_a_transaction_pooler(
    rt_stack: Stack, pooler: str
) -> None:
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {"key": "tag", "type": "contact_update", "config": {"properties": {"via": "pooler"}}},
        {"key": "again", "type": "contact_update", "config": {"properties": {"done": True}}},
    ]
    make_automation(rt_stack, steps, chain("start", "tag", "again"))
    pooled = {"AUTOMATIONS_DATABASE_URL": pooler, "AUTOMATIONS_DATABASE_POOLING": "transaction"}
    rt_stack.restart_worker(**pooled)
    server = ApiServer(rt_stack)
    try:
        server.start(**pooled)
        emails = [unique_email("pooled") for _ in range(40)]

        def send(email: str) -> httpx.Response:
            with server.client(api_key=API_KEY) as client:
                return client.post("/events/send", json={"event": "user.created", "email": email})

        # Several requests at once: the API's connections share the pooler's server sessions.
        with ThreadPoolExecutor(max_workers=8) as threads:
            answers = list(threads.map(send, emails))
        assert [answer.status_code for answer in answers] == [202] * len(emails), answers[0].text
        rt_stack.wait_for(
            lambda: statuses(rt_stack) == ["completed"] * len(emails),
            timeout=60,
            what="every run to complete",
        )
    finally:
        server.stop()
        rt_stack.restart_worker()
    logs = (rt_stack.workdir / f"worker-{rt_stack.backend}.log").read_text(errors="replace")
    assert "prepared statement" not in logs
    assert "prepared statement" not in (rt_stack.workdir / "api.log").read_text(errors="replace")


def statuses(stack: Stack) -> list[str]:
    with transaction(stack.runtime.sessions) as session:
        return [str(status) for status in session.scalars(select(Run.status))]


def test_db_upgrade_through_a_transaction_pooler_is_refused_in_one_line(pooler: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
    env |= {"AUTOMATIONS_DATABASE_URL": pooler, "AUTOMATIONS_DATABASE_POOLING": "transaction"}
    done = subprocess.run(
        [automations(), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 5, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "AUTOMATIONS_DATABASE_POOLING=transaction" in line
    assert "Traceback" not in done.stderr


def test_a_transaction_pool_is_refused_for_a_database_that_is_not_postgresql(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
    env |= {
        "AUTOMATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite3'}",
        "AUTOMATIONS_DATABASE_POOLING": "transaction",
    }
    done = subprocess.run(
        [automations(), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 5, done.stderr
    assert "AUTOMATIONS_DATABASE_POOLING" in done.stderr
    assert "not a postgresql URL" in done.stderr
