"""How every command fails: one `error:` line on stderr, a hint, and an exit code of its own."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError


class ExitCode(IntEnum):
    """What a script may rely on; documented in cli/README.md and in every command's help."""

    OK = 0
    REFUSED = 1  # the API answered 4xx, or an operator command's target does not exist
    BAD_INPUT = 2  # found locally before any request (and typer's own usage errors)
    UNREACHABLE = 3  # no answer from the API, a 5xx, or an answer that is not the API's JSON
    FAILED = 4  # a check failed: a simulated run, an expectation, db check-rollup, a stalled --wait
    # An AUTOMATIONS_* variable is invalid, or unfit for production. The API and worker
    # processes exit with it too, as engine.settings.BAD_SETTINGS_EXIT (a unit test checks they
    # agree): imported from there, pydantic-settings would load with every command.
    BAD_SETTINGS = 5
    DATABASE_UNREACHABLE = 6  # the database cannot be connected to (or opened)
    NO_SCHEMA = 7  # the database has no schema, or an older one: `automations db upgrade`
    PORT_IN_USE = 8  # the server's port is taken


EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 the API refused the request (4xx); "
    "2 bad input found locally; 3 API unreachable or failing (5xx)."
)
ALL_EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 refused (API 4xx, unknown domain); 2 bad input; "
    "3 API unreachable; 4 a check failed (simulate, db check-rollup, a stalled --wait); "
    "5 bad settings; 6 database unreachable; 7 no schema (run automations db upgrade); "
    "8 port in use."
)


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print one `error:` line on stderr and leave with `code`."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(int(code))


def fail_settings(exc: ValidationError) -> NoReturn:
    """The settings pydantic refused, by variable name and rule; values are not echoed."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        problems.append(f"AUTOMATIONS_{field.upper()}: {error['msg']}")
    fail(
        f"invalid configuration: {'; '.join(problems)} (fix the environment variable)",
        ExitCode.BAD_SETTINGS,
    )
