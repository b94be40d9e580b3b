"""Entry point of the `automations` command."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import client, server, simulation
from cli.failures import ALL_EXIT_CODES_HELP

app = typer.Typer(
    name="automations",
    help="A durable automation runtime: Resend Automations, self-hosted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog=ALL_EXIT_CODES_HELP,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"automations {version('automations')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """A durable automation runtime: Resend Automations, self-hosted."""


server.register(app)
client.register(app)
simulation.register(app)


def main() -> None:
    app()
