"""Commands that run the runtime: api, worker, scheduler, flower, dev, demo, db, keys, domains."""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.failures import ExitCode, fail
from cli.http import DEFAULT_API_URL
from cli.local_keys import DEMO_DATA_DIR, DEV_DATA_DIR, key_file
from cli.ports import require_free_port
from cli.settings import (
    check_broker,
    check_rate_limit_url,
    check_transport,
    read_settings,
    refusing_bad_configuration,
)

if TYPE_CHECKING:
    from rich.console import Console

    from engine.runtime import Runtime
    from engine.settings import Settings


# What a command needs beyond typer is imported inside it: `automations` starts afresh for each
# command, and importing every command's needs (Celery, uvicorn, SQLAlchemy) would slow them all.
@functools.cache
def out() -> Console:
    """The console the commands print their results on, with rich's markup."""
    from rich.console import Console

    return Console()


db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
domains_app = typer.Typer(help="Sending domains.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option(help="Where state, emails and the dev API key are kept.")]
# A port out of range would be wrapped (70000 listens on 4464) or misread as an unknown host.
MAX_PORT = 65535


def check_process_settings(current: Settings) -> Settings:
    """`current`, refused (one line, ExitCode.BAD_SETTINGS) if a process must not run with them
    or its broker URL is unusable: checked before anything is connected to."""
    with refusing_bad_configuration():
        current.check_production_ready()
    check_broker(current)
    return current


def celery_app(current: Settings) -> object:
    """The Celery app of a worker, beat or Flower, for settings `check_process_settings` passed."""
    from engine.logs import configure_logging
    from tasks.app import create_celery_app

    configure_logging(json_lines=current.log_json, level=current.log_level)
    with refusing_bad_configuration():
        return create_celery_app(current)


def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(min=0, max=MAX_PORT, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="uvicorn worker processes (default: AUTOMATIONS_API_WORKERS, else 1)."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and the dashboard (production: PostgreSQL and Redis)."""
    # The broker may be down (events are kept), never unusable.
    current = check_process_settings(read_settings())
    check_transport(current)
    if current.rate_limit_redis_url:
        check_rate_limit_url(current.rate_limit_redis_url)
    require_free_port(host, port)
    # Imported once the settings passed: a refused process loads no database or server code.
    import uvicorn

    from cli.database import require_schema
    from engine.logs import configure_logging

    require_schema(current.database_url)
    configure_logging(json_lines=current.log_json, level=current.log_level)
    uvicorn.run(
        "wiring.server:create",
        factory=True,
        host=host,
        port=port,
        workers=workers or current.api_workers,
        log_config=None,
    )


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Processes (default: AUTOMATIONS_WORKER_CONCURRENCY, else CPUs)."),
    ] = None,
    pool: Annotated[
        str,
        typer.Option(
            help="prefork: one process that forks --concurrency children, and writes event "
            "messages in groups; solo: this process alone, one per core, less CPU per step but "
            "one event message per transaction (docs/operations.md, Sizing the workers)."
        ),
    ] = "prefork",
) -> None:
    """Execute steps: a Celery worker on the automations queues. Run as many as you like."""
    current = read_settings()
    processes = concurrency or current.worker_concurrency
    check_pool(pool, processes)
    check_process_settings(current)  # before anything: a process refused touches nothing
    check_transport(current)
    from cli.database import require_schema  # once the settings passed, as in `api`

    require_schema(current.database_url)
    app = celery_app(current)
    argv = ["worker", "-Q", "automations,automations.sweeper", "--pool", pool]
    # Heartbeats stay on (Celery's default): they keep the event dispatcher alive, so Flower
    # can turn task events on remotely when they are off (AUTOMATIONS_TASK_EVENTS).
    if current.task_events:
        argv.append("--task-events")
    argv += ["--loglevel", current.log_level]
    if processes and pool == "prefork":
        argv += ["--concurrency", str(processes)]
    if pool == "solo":
        # Several solo workers share a host: each needs a node name of its own for Flower and
        # for remote control (Celery's default, celery@host, would be the same for all).
        argv += ["--hostname", f"solo-{os.getpid()}@%h"]
    app.worker_main(argv)  # type: ignore[attr-defined]


# The pools the workers are tested and measured with (tests/integration/test_flower.py runs
# both; bench/throughput.py --pool measures both).
POOLS = ("prefork", "solo")


def check_pool(pool: str, processes: int | None) -> None:
    """Refuse a pool we do not run, and a solo worker asked for several processes (Celery
    would start one and say nothing)."""
    if pool not in POOLS:
        fail(f"--pool {pool}: the pool is prefork or solo", ExitCode.BAD_INPUT)
    if pool == "solo" and processes is not None and processes > 1:
        fail(
            f"--pool solo runs one process, not {processes} (--concurrency or "
            "AUTOMATIONS_WORKER_CONCURRENCY): start one solo worker per core instead",
            ExitCode.BAD_INPUT,
        )


def scheduler(
    schedule_file: Annotated[Path, typer.Option(help="Celery beat's state file.")] = Path(
        "/tmp/automations-beat-schedule"  # noqa: S108 - beat keeps only last-run times here
    ),
) -> None:
    """Run the sweeper on its beat schedule. Exactly one per deployment."""
    # Beat opens the file (shelve adds suffixes) only once started, with a traceback if it can't.
    folder = schedule_file.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        fail(
            f"--schedule-file {schedule_file}: {folder} is not a folder this process can write",
            ExitCode.BAD_INPUT,
        )
    current = check_process_settings(read_settings())
    argv = ["beat", "--schedule", str(schedule_file), "--loglevel", current.log_level]
    celery_app(current).start(argv)  # type: ignore[attr-defined]


def flower(
    port: Annotated[int, typer.Option(min=0, max=MAX_PORT, help="Port of Flower's web UI.")] = 5555,
    basic_auth: Annotated[
        str | None, typer.Option(envvar="FLOWER_BASIC_AUTH", help="user:password")
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve without a login outside development: only behind a proxy that"
            " authenticates.",
        ),
    ] = False,
) -> None:
    """Flower: live workers, queues and task events (the run history is in the dashboard).

    Outside development it needs FLOWER_BASIC_AUTH, or --no-auth said out loud."""
    current = check_process_settings(read_settings())  # the settings' own refusals first
    app = celery_app(current)
    env = current.env
    if not basic_auth and not no_auth and env != "development":
        fail(
            "Flower shows every worker, queue and task to whoever reaches its port: set"
            " FLOWER_BASIC_AUTH=user:password, or pass --no-auth if a proxy in front of it"
            " authenticates",
            ExitCode.BAD_SETTINGS,
        )
    if basic_auth and env != "development":
        check_flower_logins(basic_auth, env)
    argv = ["flower", f"--port={port}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    app.start(argv)  # type: ignore[attr-defined]


def check_flower_logins(basic_auth: str, env: str) -> None:
    """Flower limits no guesses at its logins (`user:password`, comma-separated): like the
    tokens of /metrics and the docs, each password is held to the secrets' length. One line,
    never the value."""
    from engine.settings import MIN_SECRET_BYTES

    for login in basic_auth.split(","):
        _, colon, password = login.partition(":")
        if not colon or len(password.encode()) < MIN_SECRET_BYTES:
            fail(
                f"FLOWER_BASIC_AUTH (--basic-auth) must be user:password with a password of at"
                f" least {MIN_SECRET_BYTES} bytes when AUTOMATIONS_ENV={env}: Flower limits no"
                " guesses. Set a long random one, e.g. `python -c 'import secrets;"
                " print(secrets.token_urlsafe(32))'`",
                ExitCode.BAD_SETTINGS,
            )


def operator_runtime() -> Runtime:
    """The runtime for a one-off command on the database, once its schema is known to be there."""
    from cli.database import require_schema
    from engine.runtime import create_runtime

    current = read_settings()
    check_transport(current)
    require_schema(current.database_url)
    return create_runtime(current)  # its clock and transport settings are checked by now


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema to `revision` (default: the latest)."""
    from alembic.util import CommandError

    from cli.database import check_reachable, require_kept, sqlite_file, upgrade_schema

    if not revision.strip():  # alembic fails an assertion on it, with a traceback
        fail("--revision is empty: give one, such as head or 0007", ExitCode.BAD_INPUT)
    settings = read_settings()
    if settings.database_pooling == "transaction":
        fail(
            "automations db upgrade needs a database session of its own (two upgrades take "
            "turns through a session lock), which AUTOMATIONS_DATABASE_POOLING=transaction "
            "says this URL does not give: run it with AUTOMATIONS_DATABASE_URL set to "
            "PostgreSQL itself or to a session pool, and AUTOMATIONS_DATABASE_POOLING unset",
            ExitCode.BAD_SETTINGS,
        )
    url = settings.database_url
    require_kept(url)
    # A SQLite file is created by the upgrade; a server must answer first.
    if sqlite_file(url) is None:
        check_reachable(url)
    try:
        reached = upgrade_schema(url, revision)
    except CommandError as exc:  # an unknown --revision
        fail(f"cannot upgrade to {revision!r}: {exc}", ExitCode.BAD_INPUT)
    out().print(f"database at revision {reached}")


# How many differing counters check-rollup lists before it only counts the rest.
SHOWN_DIFFERENCES = 20


@db_app.command("check-rollup")
def db_check_rollup(
    repair: Annotated[
        bool, typer.Option("--repair", help="Add to each differing counter what it lacks.")
    ] = False,
    since: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Only the hours from this UTC day (YYYY-MM-DD) on: reads only their runs.",
        ),
    ] = None,
) -> None:
    """Compare the metrics' hourly rollup with a recount of every run and step; --repair
    corrects what differs (safe while the runtime runs: nothing waits for it)."""
    from cli.database import reaching
    from engine.errors import InvalidInput
    from engine.rollup_check import check_rollup, describe, repair_rollup

    rt = operator_runtime()
    day = since.date() if since is not None else None
    try:
        with reaching(rt.settings.database_url):
            found = repair_rollup(rt, day) if repair else check_rollup(rt, day)
    except InvalidInput as exc:
        fail(f"--since: {exc.message}", ExitCode.BAD_INPUT)
    if not found:
        scope = "every run and step" if day is None else f"the runs and steps since {day} UTC"
        out().print(f"the rollup equals a recount of {scope}")
        return
    for difference in found[:SHOWN_DIFFERENCES]:
        print(describe(difference))
    if len(found) > SHOWN_DIFFERENCES:
        print(f"... and {len(found) - SHOWN_DIFFERENCES} more")
    if repair:
        out().print(f"repaired {len(found)} rollup counter(s) to their recount")
        return
    fail(
        f"{len(found)} rollup counter(s) differ from a recount; "
        "automations db check-rollup --repair corrects them",
        ExitCode.FAILED,
    )


@keys_app.command("create")
def keys_create(
    name: str,
    permission: Annotated[str, typer.Option(help="full_access or sending_access")] = "full_access",
) -> None:
    """Create an API key; its secret is printed once and stored only as a hash."""
    from cli.database import reaching
    from engine.api_keys import create_api_key
    from engine.db import transaction
    from engine.errors import InvalidInput

    rt = operator_runtime()
    try:
        with reaching(rt.settings.database_url), transaction(rt.sessions) as session:
            key, secret = create_api_key(
                session, name=name, permission=permission, now=rt.clock.now()
            )
    except InvalidInput as exc:
        fail(exc.message, ExitCode.BAD_INPUT)
    out().print(f"created key {key.id} ({key.name}); the secret is shown only now:")
    print(secret)


@domains_app.command("verify")
def domains_verify(domain: Annotated[str, typer.Argument(help="Domain id or name.")]) -> None:
    """Mark a sending domain verified (no DNS is looked up: this is the operator's word)."""
    from cli.database import reaching
    from engine import content
    from engine.db import transaction
    from engine.errors import NotFound

    rt = operator_runtime()
    try:
        with reaching(rt.settings.database_url), transaction(rt.sessions) as session:
            found = content.verify_domain(session, content.find_domain_by_ref(session, domain).id)
            name = found.name
    except NotFound as exc:
        fail(f"{exc.message}; create it first (POST /domains)", ExitCode.REFUSED)
    out().print(f"domain {name} is verified")


def dev(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=MAX_PORT)] = 8000,
    data_dir: DataDir = DEV_DATA_DIR,
    threads: Annotated[int, typer.Option(min=1, help="Step executor threads.")] = 2,
) -> None:
    """Everything in one process on SQLite: API, dashboard, steps, sweeper. Ctrl-C stops."""
    from cli.embedded import embedded_settings, owning, serving, wait_for_stop_signal
    from engine.logs import configure_logging

    require_free_port(host, port, client_hint=True)
    with refusing_bad_configuration():
        current = embedded_settings(data_dir)
    configure_logging()
    key = current.api_key.get_secret_value() if current.api_key else ""
    with owning(data_dir), serving(current, host=host, port=port, threads=threads) as server:
        out().print(f"[bold]automations dev[/] on {server.url} (dashboard: {server.url}/dashboard)")
        out().print(f"API key: {key}  (kept in {key_file(data_dir)}, where the CLI finds it)")
        out().print(f"state: {data_dir / 'automations.sqlite3'}; emails: {data_dir / 'outbox'}")
        if server.url != DEFAULT_API_URL:
            out().print(f"client commands: export AUTOMATIONS_API_URL={server.url}")
        out().print("Ctrl-C stops.")
        wait_for_stop_signal()


def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=MAX_PORT)] = 8000,
    data_dir: Annotated[
        Path, typer.Option(help="Wiped and refilled on each demo.")
    ] = DEMO_DATA_DIR,
    day_seconds: Annotated[
        float, typer.Option(min=0.01, max=86400, help="How long '1 day' lasts in the demo.")
    ] = 3.0,
    exit_when_done: Annotated[
        bool, typer.Option("--exit", help="Stop once every run ended (exit 1 if one went wrong).")
    ] = False,
) -> None:
    """Load a sample welcome series, send events, and watch the runs advance live."""
    from cli.demo import run_demo

    require_free_port(host, port, client_hint=True)
    with refusing_bad_configuration():
        run_demo(
            host=host,
            port=port,
            data_dir=data_dir,
            day_seconds=day_seconds,
            exit_when_done=exit_when_done,
        )


def register(app: typer.Typer) -> None:
    """Add the server-side commands to the app."""
    for command in (api, worker, scheduler, flower, dev, demo):
        app.command()(command)
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")
    app.add_typer(domains_app, name="domains")
