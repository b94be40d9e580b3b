"""Process helpers the benchmarks share: a free port, the API serving, a sure stop."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from bench.children import ends_with_this_process
from engine.db import create_db_engine, create_schema, create_session_factory, drop_schema
from engine.db import transaction as db_transaction

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_database(database_url: str) -> None:
    """Create the bench's PostgreSQL database if it does not exist yet."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql") or not url.database:
        return
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first()
            if exists is None:
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    finally:
        server.dispose()


def fresh_schema(db_engine: Engine) -> None:
    """The schema dropped and created anew, in a database created first if it does not exist
    yet: every benchmark starts from its own empty tables, on a fresh machine too."""
    ensure_database(db_engine.url.render_as_string(hide_password=False))
    drop_schema(db_engine)
    create_schema(db_engine)


@contextmanager
def empty_database(database_url: str) -> Iterator[Session]:
    """A transaction on a schema dropped and created anew: what a benchmark sets up first
    (the database created if it does not exist yet)."""
    db_engine = create_db_engine(database_url)
    try:
        fresh_schema(db_engine)
        with db_transaction(create_session_factory(db_engine)) as session:
            yield session
    finally:
        db_engine.dispose()


def analyze_tables(database_url: str) -> None:
    """Table statistics, as autovacuum keeps them in production: run once the bench's tables
    hold some rows, before its measures start.

    A new database's tables were never analyzed: PostgreSQL guesses their rows from their
    columns' widths (a contact ~1.6 KB, a fifteenth of what it is) and plans a lookup of the
    contacts of a group of events as a scan of them all. Autovacuum analyzes a table within a
    minute of its first fifty rows and again each time it grew a tenth, and cached plans are
    made anew then; a bench phase of a few seconds would measure that first minute only. A
    table with fewer rows is left alone, as autovacuum leaves it: analyzed empty, a table about
    to fill (the outbox, before the first send) is planned as empty, scanned whole for each
    lookup until the next analyze.
    """
    if make_url(database_url).get_backend_name() != "postgresql":
        return  # SQLite keeps statistics only if ANALYZE is run, which the runtime never does
    db_engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with db_engine.connect() as conn:
            listed = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            for (table,) in conn.execute(text(listed)).all():
                name = conn.dialect.identifier_preparer.quote(table)  # our schema's own tables
                some = f"SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT 50) AS t"  # noqa: S608
                if conn.execute(text(some)).scalar_one() >= 50:
                    conn.execute(text(f"ANALYZE {name}"))
    finally:
        db_engine.dispose()


def api_env(
    database_url: str, redis_url: str, api_key: str, transport_url: str = "console://"
) -> dict[str, str]:
    """The environment of an API or worker process of a benchmark."""
    return {
        **os.environ,
        "AUTOMATIONS_DATABASE_URL": database_url,
        "AUTOMATIONS_BROKER_URL": redis_url,
        "AUTOMATIONS_API_KEY": api_key,
        "AUTOMATIONS_EMAIL_TRANSPORT_URL": transport_url,
    }


@contextmanager
def serve_api(env: dict[str, str], *, workers: int = 1, root: Path = ROOT) -> Iterator[str]:
    """The API under uvicorn, as an operator runs it, from the checkout at `root`; yields its
    base URL once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "wiring.server:create"]
    command += ["--port", str(port), "--workers", str(workers)]
    command += ["--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(  # noqa: S603 - our own interpreter
        command, cwd=root, env=env, preexec_fn=ends_with_this_process()
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        # One client for the polls: each new one builds an SSL context (about 20 ms of CPU).
        with httpx.Client(timeout=1) as probe:
            while True:
                try:
                    probe.get(base_url + "/health").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the API did not start") from None
                    time.sleep(0.1)
        yield base_url
    finally:
        stop(server, timeout=10)


def add_side_arguments(parser: argparse.ArgumentParser, *, pairs: bool = True) -> None:
    """`--baseline-root`, and `--pairs` unless not wanted: a benchmark that compares this
    checkout with another, measured the same way in the same run (see `sides`)."""
    if pairs:
        parser.add_argument("--pairs", type=int, default=1, help="times each side is measured")
    parser.add_argument(
        "--baseline-root",
        type=Path,
        help="another checkout (e.g. a worktree of main) measured first, then alternating",
    )


def sides(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The checkouts to measure, in order: the baseline's first if given, then this one, the
    pair `--pairs` times over."""
    pair = [("baseline", args.baseline_root)] if args.baseline_root else []
    return [*pair, ("this checkout", ROOT)] * getattr(args, "pairs", 1)


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Terminate, then kill if it does not exit: a bench that fails must not leave it running."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
