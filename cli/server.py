"""Commands that run the runtime: api, worker, scheduler, flower, dev, demo, db, keys, domains."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from engine.logs import configure_logging
from engine.settings import ConfigurationError, Settings

err = Console(stderr=True)
out = Console()

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
domains_app = typer.Typer(help="Sending domains.", no_args_is_help=True)

DataDir = Annotated[Path, typer.Option(help="Where state, emails and the dev API key are kept.")]


def settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the variable and the rule
        err.print(f"[red]error:[/] invalid configuration: {exc}")
        raise typer.Exit(2) from None


@contextmanager
def refusing_bad_configuration() -> Iterator[None]:
    """A server or worker that must not start says why in one line and exits 2."""
    try:
        yield
    except ConfigurationError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


def celery_app() -> object:
    from tasks.app import create_celery_app

    current = settings()
    with refusing_bad_configuration():
        current.check_production_ready()
    configure_logging(json_lines=current.log_json, level=current.log_level)
    with refusing_bad_configuration():
        return create_celery_app(current)


def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API and the dashboard (production: PostgreSQL and Redis)."""
    import uvicorn

    current = settings()
    with refusing_bad_configuration():
        current.check_production_ready()
    configure_logging(json_lines=current.log_json, level=current.log_level)
    uvicorn.run(
        "api.asgi:create", factory=True, host=host, port=port, workers=workers, log_config=None
    )


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(help="Processes (default: AUTOMATIONS_WORKER_CONCURRENCY, else CPUs)."),
    ] = None,
    pool: Annotated[str, typer.Option(help="Celery pool.")] = "prefork",
) -> None:
    """Execute steps: a Celery worker on the automations queues. Run as many as you like."""
    app = celery_app()
    argv = ["worker", "-Q", "automations,automations.sweeper", "--pool", pool]
    # Heartbeats stay on (Celery's default): they keep the event dispatcher alive, so Flower
    # can turn task events on remotely when they are off (AUTOMATIONS_TASK_EVENTS).
    if settings().task_events:
        argv.append("--task-events")
    argv += ["--loglevel", settings().log_level]
    processes = concurrency or settings().worker_concurrency
    if processes:
        argv += ["--concurrency", str(processes)]
    app.worker_main(argv)  # type: ignore[attr-defined]


def scheduler(
    schedule_file: Annotated[Path, typer.Option(help="Celery beat's state file.")] = Path(
        "/tmp/automations-beat-schedule"  # noqa: S108 - beat keeps only last-run times here
    ),
) -> None:
    """Run the sweeper on its beat schedule. Exactly one per deployment."""
    argv = ["beat", "--schedule", str(schedule_file), "--loglevel", settings().log_level]
    celery_app().start(argv)  # type: ignore[attr-defined]


def flower(
    port: Annotated[int, typer.Option(help="Port of Flower's web UI.")] = 5555,
    basic_auth: Annotated[
        str | None, typer.Option(envvar="FLOWER_BASIC_AUTH", help="user:password")
    ] = None,
) -> None:
    """Flower: live workers, queues and task events (the run history is in the dashboard)."""
    argv = ["flower", f"--port={port}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    celery_app().start(argv)  # type: ignore[attr-defined]


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema to `revision` (default: the latest)."""
    from migrations import current, upgrade

    url = settings().database_url
    upgrade(url, revision)
    out.print(f"database at revision {current(url)}")


@keys_app.command("create")
def keys_create(
    name: str,
    permission: Annotated[str, typer.Option(help="full_access or sending_access")] = "full_access",
) -> None:
    """Create an API key; its secret is printed once and stored only as a hash."""
    from engine.api_keys import create_api_key
    from engine.db import transaction
    from engine.errors import InvalidInput
    from engine.runtime import create_runtime

    rt = create_runtime(settings())
    try:
        with transaction(rt.sessions) as session:
            key, secret = create_api_key(
                session, name=name, permission=permission, now=rt.clock.now()
            )
    except InvalidInput as exc:
        err.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from None
    out.print(f"created key {key.id} ({key.name}); the secret is shown only now:")
    print(secret)


@domains_app.command("verify")
def domains_verify(domain: Annotated[str, typer.Argument(help="Domain id or name.")]) -> None:
    """Mark a sending domain verified (no DNS is looked up: this is the operator's word)."""
    from engine import catalog
    from engine.db import transaction
    from engine.errors import NotFound
    from engine.runtime import create_runtime

    rt = create_runtime(settings())
    try:
        with transaction(rt.sessions) as session:
            found = catalog.verify_domain(session, catalog.find_domain_by_ref(session, domain).id)
            name = found.name
    except NotFound as exc:
        err.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(1) from None
    out.print(f"domain {name} is verified")


def dev(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    data_dir: DataDir = Path("data"),
    threads: Annotated[int, typer.Option(help="Step executor threads.")] = 2,
) -> None:
    """Everything in one process on SQLite: API, dashboard, steps, sweeper. Ctrl-C stops."""
    from cli.embedded import EmbeddedServer, embedded_settings, wait_for_stop_signal

    with refusing_bad_configuration():
        current = embedded_settings(data_dir)
    configure_logging()
    server = EmbeddedServer(current, host=host, port=port, threads=threads)
    key = current.api_key.get_secret_value() if current.api_key else ""
    with server.running():
        out.print(f"[bold]automations dev[/] on {server.url} (dashboard: {server.url}/dashboard)")
        out.print(f"API key: {key}  (kept in {data_dir / 'api-key'})")
        out.print(f"state: {data_dir / 'automations.sqlite3'}; emails: {data_dir / 'outbox'}")
        out.print("Ctrl-C stops.")
        wait_for_stop_signal()


def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    data_dir: Annotated[Path, typer.Option(help="Wiped and refilled on each demo.")] = Path(
        "data/demo"
    ),
    day_seconds: Annotated[float, typer.Option(help="How long '1 day' lasts in the demo.")] = 3.0,
    exit_when_done: Annotated[
        bool, typer.Option("--exit", help="Stop once every run ended (exit 1 if one went wrong).")
    ] = False,
) -> None:
    """Load a sample welcome series, send events, and watch the runs advance live."""
    from cli.demo import run_demo

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
