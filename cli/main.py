"""Entry point of the `automations` command."""

from __future__ import annotations

import typer

from cli import client, server, simulation

app = typer.Typer(
    name="automations",
    help="A durable automation runtime: Resend Automations, self-hosted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
server.register(app)
client.register(app)
simulation.register(app)


def main() -> None:
    app()
