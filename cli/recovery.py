"""Client commands that recover runs: retry or replay one run, or every run a filter matches."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from cli.client import (
    ApiKey,
    ApiUrl,
    AsJson,
    AutomationId,
    _api,
    _print_json,
    _show,
)
from cli.http import DEFAULT_API_URL, EXIT_CODES_HELP, Api, ExitCode, fail, path

OptionalRunId = Annotated[
    str | None,
    typer.Argument(help="The run's id; leave it out to take every run the filter matches."),
]
Status = Annotated[
    str | None,
    typer.Option(help="Runs in these statuses (comma list); default failed."),
]
ErrorCode = Annotated[
    str | None, typer.Option("--error-code", help="Runs whose failed step has this error code.")
]
StepKey = Annotated[str | None, typer.Option("--step-key", help="Runs that failed at this step.")]
CreatedAfter = Annotated[
    str | None, typer.Option("--created-after", help="Runs created after (ISO 8601).")
]
CreatedBefore = Annotated[
    str | None, typer.Option("--created-before", help="Runs created before (ISO 8601).")
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Only count the matching runs and show the newest.")
]
Wait = Annotated[
    bool, typer.Option("--wait", help="Follow a bulk operation until every run is done.")
]
StallSeconds = Annotated[
    float,
    typer.Option(
        "--stall-seconds",
        min=1,
        help="With --wait: stop waiting (exit 4) once the operation made no progress this long, "
        "as when no worker runs; the operation itself goes on.",
    ),
]
FromCancelled = Annotated[
    bool,
    typer.Option(
        "--from-cancelled", help="Retry cancelled runs from the step they were cancelled at."
    ),
]

BulkId = Annotated[str, typer.Argument(help="The bulk operation's id (`id` in its answer).")]

POLL_SECONDS = 0.5
PAST = {"retry": "retried", "replay": "replayed"}
# A bulk operation's statuses once it is over.
ENDED = ("completed", "cancelled")


def _filter(
    status: str | None,
    error_code: str | None,
    step_key: str | None,
    created_after: str | None,
    created_before: str | None,
    dry_run: bool,
) -> dict[str, Any]:
    given = {
        "status": status,
        "error_code": error_code,
        "step_key": step_key,
        "created_after": created_after,
        "created_before": created_before,
    }
    body = {name: value for name, value in given.items() if value is not None}
    return {**body, "dry_run": True} if dry_run else body


def _single(
    api: Api, action: str, automation_id: str, run_id: str, body: dict[str, Any] | None
) -> Any:
    return api.call(
        "POST",
        path("automations", automation_id, "runs", run_id, action),
        body=body,
        subject=f"run {run_id} of automation {automation_id}",
    )


def _bulk(
    api: Api,
    action: str,
    automation_id: str,
    body: dict[str, Any],
    *,
    wait: float | None,
    as_json: bool,
) -> None:
    """The bulk operation asked for; followed to its end if `wait` (the stall allowed, in s)."""
    answer = api.call(
        "POST",
        path("automations", automation_id, "runs", action),
        body=body,
        subject=f"automation {automation_id}",
    )
    if answer.get("dry_run"):
        if as_json:
            return _print_json(answer)
        typer.echo(f"{answer['matched']} runs would be {PAST[action]} (dry run)")
        if answer.get("sample"):
            from cli import render

            _show(render.runs_table(answer["sample"]))
        return None
    if wait is not None:
        answer = _follow(api, automation_id, answer, stall=wait)
    if as_json:
        return _print_json(answer)
    typer.echo(_progress(answer))
    if answer.get("failed"):
        raise typer.Exit(int(ExitCode.REFUSED))
    return None


def _follow(
    api: Api, automation_id: str, answer: dict[str, Any], *, stall: float
) -> dict[str, Any]:
    """Poll the operation until it completes; fail once its counts stood still `stall` s.

    Workers carry a bulk operation out: with none running it never moves, and a wait with no
    end would hang a script. A long queue still moves, so only a stall ends the wait."""
    where = path("automations", automation_id, "runs", "retries", str(answer["id"]))
    seen, moved = _counts(answer), time.monotonic()
    shown = _Progress()
    while answer.get("status") not in ENDED:
        shown.update(answer)
        if time.monotonic() - moved >= stall:
            shown.end()
            fail(
                f"{_progress(answer)}: no progress in {stall:g} s; is a worker running? The "
                f"operation goes on: GET {where} follows it",
                ExitCode.FAILED,
            )
        time.sleep(POLL_SECONDS)
        answer = api.call("GET", where, subject=f"bulk operation {answer['id']}")
        if _counts(answer) != seen:
            seen, moved = _counts(answer), time.monotonic()
    shown.end()
    return answer


class _Progress:
    """The operation's counts on one line of a terminal's stderr, rewritten as they move; on
    anything else (a script, a pipe, a log) nothing, so its output stays the final line."""

    def __init__(self) -> None:
        self.on = sys.stderr.isatty()
        self.width = 0

    def update(self, answer: dict[str, Any]) -> None:
        if self.on:
            text = _progress(answer)
            sys.stderr.write("\r" + text.ljust(self.width))
            sys.stderr.flush()
            self.width = len(text)

    def end(self) -> None:
        """Clear the line, for what is printed next."""
        if self.on and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def _counts(answer: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(answer.get(name) for name in ("status", "done", "skipped", "failed"))


def _progress(answer: dict[str, Any]) -> str:
    return (
        f"bulk {answer['action']} {answer['id']}: {answer['status']}, matched "
        f"{answer['matched']}, done {answer['done']}, skipped {answer['skipped']}, "
        f"failed {answer['failed']}"
    )


def retry(
    automation_id: AutomationId,
    run_id: OptionalRunId = None,
    status: Status = None,
    error_code: ErrorCode = None,
    step_key: StepKey = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    from_cancelled: FromCancelled = False,
    dry_run: DryRun = False,
    wait: Wait = False,
    stall_seconds: StallSeconds = 120.0,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Retry a failed run from its failed step, or every run a filter matches.

    Steps that completed are not run again and an email already sent is not sent again.
    """
    api = _api(api_url, api_key)
    start = {"from": "cancelled_step"} if from_cancelled else {}
    filters = _filter(status, error_code, step_key, created_after, created_before, dry_run)
    if run_id is None:
        follow = stall_seconds if wait else None
        return _bulk(
            api, "retry", automation_id, {**filters, **start}, wait=follow, as_json=as_json
        )
    if filters:
        fail("filters apply to many runs: give a run id or filters, not both", ExitCode.BAD_INPUT)
    run = _single(api, "retry", automation_id, run_id, start or None)
    if as_json:
        return _print_json(run)
    typer.echo(f"retried run {run['id']}: {run['status']}")
    return None


def replay(
    automation_id: AutomationId,
    run_id: OptionalRunId = None,
    status: Status = None,
    error_code: ErrorCode = None,
    step_key: StepKey = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    dry_run: DryRun = False,
    wait: Wait = False,
    stall_seconds: StallSeconds = 120.0,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Replay a run as a new run of the automation's current version (same event and contact),
    or every run a filter matches that was not replayed yet."""
    api = _api(api_url, api_key)
    filters = _filter(status, error_code, step_key, created_after, created_before, dry_run)
    if run_id is None:
        follow = stall_seconds if wait else None
        return _bulk(api, "replay", automation_id, filters, wait=follow, as_json=as_json)
    if filters:
        fail("filters apply to many runs: give a run id or filters, not both", ExitCode.BAD_INPUT)
    answer = _single(api, "replay", automation_id, run_id, None)
    if as_json:
        return _print_json(answer)
    typer.echo(f"replayed run {answer['replay_of']} as run {answer['id']}")
    return None


def cancel_bulk(
    automation_id: AutomationId,
    bulk_id: BulkId,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a bulk retry or replay: the runs it has not reached are left as they were."""
    answer = _api(api_url, api_key).call(
        "POST",
        path("automations", automation_id, "runs", "retries", bulk_id, "cancel"),
        subject=f"bulk operation {bulk_id} of automation {automation_id}",
    )
    if as_json:
        return _print_json(answer)
    typer.echo(_progress(answer))
    return None


def register(runs: typer.Typer) -> None:
    """Add the recovery commands to the `runs` group."""
    runs.command("retry", epilog=EXIT_CODES_HELP)(retry)
    runs.command("replay", epilog=EXIT_CODES_HELP)(replay)
    runs.command("cancel-bulk", epilog=EXIT_CODES_HELP)(cancel_bulk)
