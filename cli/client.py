"""Client commands over the HTTP API: automations, their runs, events, and `apply FILE`."""

from __future__ import annotations

import datetime as dt
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cli.failures import EXIT_CODES_HELP, ExitCode, fail
from cli.http import DEFAULT_API_URL, Api, path
from cli.local_keys import local_keys

if TYPE_CHECKING:
    from rich.console import RenderableType

# Each command imports what only it uses (rich and cli.render for tables, yaml, httpx in
# cli.http): the `automations` process starts for every command, and scripts run many.

ApiUrl = Annotated[
    str,
    typer.Option("--api-url", envvar="AUTOMATIONS_API_URL", help="Base URL of the API."),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="AUTOMATIONS_API_KEY",
        help="API key, sent as a Bearer token (default: the one `dev` or `demo` wrote in data/).",
    ),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON answer, for scripts (e.g. `| jq`).")
]
Limit = Annotated[int | None, typer.Option(min=1, max=100, help="Page size, 1 to 100.")]
After = Annotated[str | None, typer.Option(help="Cursor: the items after (older than) this id.")]
Before = Annotated[str | None, typer.Option(help="Cursor: the items before (newer than) this id.")]
AutomationId = Annotated[str, typer.Argument(help="The automation's id.")]
RunId = Annotated[str, typer.Argument(help="The run's id.")]

FILE_FIELDS = ("id", "name", "status", "steps", "connections")


class AutomationStatus(StrEnum):
    enabled = "enabled"
    disabled = "disabled"


def _api(url: str, key: str | None) -> Api:
    # Without a key, the ones `automations dev` and `demo` wrote in this folder are tried.
    found = () if key else tuple((str(path), secret) for path, secret in local_keys())
    return Api(url.rstrip("/") or DEFAULT_API_URL, key or None, found)


def _print_json(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2, ensure_ascii=False))


def _show(*renderables: RenderableType | None) -> None:
    from rich.console import Console

    # Piped output keeps whole lines instead of folding to 80 columns.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    for renderable in renderables:
        if renderable is not None:
            console.print(renderable)


def _one_cursor(after: str | None, before: str | None) -> None:
    if after is not None and before is not None:
        fail("give --after or --before, not both", ExitCode.BAD_INPUT)


def plain_json(value: Any, what: str) -> Any:
    """`value` as strict JSON data (YAML dates become ISO text); anything else is bad input."""

    def iso(item: Any) -> str:
        if isinstance(item, dt.date):  # and datetime
            return item.isoformat()
        raise TypeError(f"{type(item).__name__} is not JSON")

    try:
        return json.loads(json.dumps(value, default=iso, allow_nan=False))
    except (TypeError, ValueError) as exc:
        fail(f"{what} holds a value JSON cannot carry: {exc}", ExitCode.BAD_INPUT)
    except RecursionError:
        too_deep(what)


def too_deep(what: str) -> NoReturn:
    """Input nested deeper than Python's parsers recurse: bad input, never their traceback.

    (The API takes far less: AUTOMATIONS_MAX_PAYLOAD_DEPTH, docs/input-limits.md.)"""
    fail(f"{what} is nested too deeply (objects and arrays within each other)", ExitCode.BAD_INPUT)


def list_automations(
    status: Annotated[AutomationStatus | None, typer.Option(help="Only these.")] = None,
    limit: Limit = None,
    after: After = None,
    before: Before = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List automations, newest first."""
    from cli import render

    _one_cursor(after, before)
    params = {
        "status": status.value if status else None,
        "limit": limit,
        "after": after,
        "before": before,
    }
    page = _api(api_url, api_key).call("GET", "/automations", params=params)
    if as_json:
        return _print_json(page)
    data = page.get("data") or []
    _show(render.automations_table(data) if data else "no automations")
    _show(render.more_hint(page, backwards=before is not None))


def list_runs(
    automation_id: AutomationId,
    status: Annotated[
        str | None,
        typer.Option(help="Comma list: running, completed, failed, cancelled, skipped."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, max=100, help="Page size, 1 to 100; default every run.")
    ] = None,
    after: After = None,
    before: Before = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List an automation's runs, newest first."""
    from cli import render

    _one_cursor(after, before)
    params = {"status": status, "limit": limit, "after": after, "before": before}
    page = _api(api_url, api_key).call(
        "GET",
        path("automations", automation_id, "runs"),
        params=params,
        subject=f"automation {automation_id}",
    )
    if as_json:
        return _print_json(page)
    data = page.get("data") or []
    _show(render.runs_table(data) if data else "no runs")
    _show(render.more_hint(page, backwards=before is not None))


def get_run(
    automation_id: AutomationId,
    run_id: RunId,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Show a run and its steps; --json adds the event payload and each step's output."""
    from cli import render

    run = _api(api_url, api_key).call(
        "GET",
        path("automations", automation_id, "runs", run_id),
        subject=f"run {run_id} of automation {automation_id}",
    )
    if as_json:
        return _print_json(run)
    _show(render.run_view(run))


def cancel_run(
    automation_id: AutomationId,
    run_id: RunId,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a run before its next step (a cancelled run stays cancelled)."""
    answer = _api(api_url, api_key).call(
        "POST",
        path("automations", automation_id, "runs", run_id, "cancel"),
        subject=f"run {run_id} of automation {automation_id}",
    )
    if as_json:
        return _print_json(answer)
    typer.echo(f"cancelled run {answer.get('id', run_id)}")


def stop(
    automation_id: AutomationId,
    cancel_runs: Annotated[
        bool, typer.Option("--cancel-runs", help="Also cancel its unfinished runs.")
    ] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Disable an automation: no new runs; runs in flight go on unless --cancel-runs."""
    answer = _api(api_url, api_key).call(
        "POST",
        path("automations", automation_id, "stop"),
        body={"cancel_runs": True} if cancel_runs else None,
        subject=f"automation {automation_id}",
    )
    if as_json:
        return _print_json(answer)
    runs = "unfinished runs cancelled" if cancel_runs else "runs in flight go on"
    if answer.get("runs_cancelling"):
        runs = "the workers are cancelling its unfinished runs; none takes a step meanwhile"
    typer.echo(f"stopped {answer.get('id', automation_id)} (disabled; {runs})")


def send_event(
    name: Annotated[str, typer.Argument(help="The event's name, e.g. user.created.")],
    email: Annotated[str | None, typer.Option(help="The contact's email.")] = None,
    contact_id: Annotated[str | None, typer.Option(help="The contact's id.")] = None,
    payload: Annotated[
        str | None, typer.Option(help="A JSON object, e.g. '{\"plan\": 1}'.")
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Send an event for a contact (give exactly one of --email and --contact-id)."""
    if (email is None) == (contact_id is None):
        fail("give exactly one of --email and --contact-id", ExitCode.BAD_INPUT)
    if email is not None:
        from engine.addresses import AddressError, canonical_email

        try:
            email = canonical_email(email)
        except AddressError as error:
            fail(f"--email {error.rule}; got {email!r}", ExitCode.BAD_INPUT)
    body: dict[str, Any] = {"event": name}
    body.update({"email": email} if email is not None else {"contact_id": contact_id})
    if payload is not None:
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as exc:
            message = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
            fail(f"--payload is not valid JSON: {message}", ExitCode.BAD_INPUT)
        except RecursionError:
            too_deep("--payload")
        if not isinstance(data, dict):
            fail('--payload must be a JSON object, e.g. \'{"plan": "pro"}\'', ExitCode.BAD_INPUT)
        body["payload"] = plain_json(data, "--payload")
    answer = _api(api_url, api_key).call("POST", "/events/send", body=body)
    if as_json:
        return _print_json(answer)
    typer.echo(f"sent {name} for {email if email is not None else contact_id}")


def read_document(file: Path) -> Any:
    """The data of a .json, .yaml or .yml file; an unreadable or malformed one exits 2."""
    import yaml

    suffix = file.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        fail(f"{file}: use a .json, .yaml or .yml file", ExitCode.BAD_INPUT)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(f"cannot read {file}: {reason}", ExitCode.BAD_INPUT)
    try:
        document = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        fail(f"{file} is not valid JSON: {exc.msg} (line {exc.lineno})", ExitCode.BAD_INPUT)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        fail(
            f"{file} is not valid YAML: {getattr(exc, 'problem', None) or exc}{where}",
            ExitCode.BAD_INPUT,
        )
    except RecursionError:
        too_deep(str(file))
    return document


def _load_file(file: Path) -> dict[str, Any]:
    """The automation a JSON or YAML file describes, checked for shape; bad input exits 2."""
    document = read_document(file)
    if not isinstance(document, dict):
        fail(f"{file} must hold a mapping: name, status, steps, connections", ExitCode.BAD_INPUT)
    unknown = sorted(str(key) for key in document if key not in FILE_FIELDS)
    if unknown:
        expected = ", ".join(FILE_FIELDS)
        fail(f"{file}: unknown field {unknown[0]!r} (expected {expected})", ExitCode.BAD_INPUT)
    if document.get("id") is None and not isinstance(document.get("name"), str):
        fail(f"{file} needs a `name` (or the `id` of the automation to update)", ExitCode.BAD_INPUT)
    plain: dict[str, Any] = plain_json(document, str(file))
    return plain


def _find_by_name(api: Api, name: str, file: Path) -> str | None:
    """The id of the one automation named `name`; None if there is none."""
    found: list[str] = []
    after = None
    while True:
        page = api.call("GET", "/automations", params={"limit": 100, "after": after})
        data = page.get("data") or []
        found += [str(item["id"]) for item in data if item.get("name") == name]
        if not page.get("has_more") or not data:
            break
        after = data[-1]["id"]
    if len(found) > 1:
        fail(
            f"{len(found)} automations are named {name!r} ({', '.join(found)}); "
            f"add `id:` to {file} to choose one",
            ExitCode.BAD_INPUT,
        )
    return found[0] if found else None


def _graph(steps: Any, connections: Any) -> Any:
    """Steps and connections as the API returns them, to compare a file with what is stored."""
    try:
        return (
            [{"key": s["key"], "type": s["type"], "config": s.get("config", {})} for s in steps],
            [{**c, "type": c.get("type", "default")} for c in connections],
        )
    except (TypeError, KeyError, AttributeError):
        return None  # malformed: let the API say what is wrong


def _changes(current: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body: only what differs from what is stored, so an identical file sends nothing.

    An unchanged graph is left out too (an enabled automation's graph may not be sent at all).
    """
    changes = {k: v for k, v in fields.items() if k in ("name", "status") and current.get(k) != v}
    if "steps" in fields or "connections" in fields:
        wanted = _graph(fields.get("steps"), fields.get("connections"))
        stored = _graph(current.get("steps"), current.get("connections"))
        if wanted is None or wanted != stored:
            changes.update({k: fields[k] for k in ("steps", "connections") if k in fields})
    return changes


def apply(
    file: Annotated[Path, typer.Argument(help="A .json, .yaml or .yml file.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Create or update an automation from a file: {id?, name, status?, steps, connections}.

    With an `id`, that automation is updated; without, the one automation with the same name is,
    or a new one is created. Prints "created <id>", "updated <id>" or "unchanged <id>".
    """
    document = _load_file(file)
    api = _api(api_url, api_key)
    fields = {k: v for k, v in document.items() if k != "id"}
    automation_id = document.get("id")
    if automation_id is None:
        automation_id = _find_by_name(api, document["name"], file)
    if automation_id is None:
        answer = api.call("POST", "/automations", body=fields)
        action, automation_id = "created", answer["id"]
    else:
        automation_id = str(automation_id)
        subject = f"automation {automation_id}"
        where = path("automations", automation_id)
        changes = _changes(api.call("GET", where, subject=subject), fields)
        action = "updated" if changes else "unchanged"
        if changes:
            api.call("PATCH", where, body=changes, subject=subject)
    if as_json:
        return _print_json({"object": "automation", "id": automation_id, "action": action})
    typer.echo(f"{action} {automation_id}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    epilog = EXIT_CODES_HELP
    app.command("list", epilog=epilog)(list_automations)
    app.command("stop", epilog=epilog)(stop)
    app.command("apply", epilog=epilog)(apply)

    from cli import recovery  # it builds on this module's options

    runs = typer.Typer(
        help="An automation's runs: list, show, cancel, retry, replay.", no_args_is_help=True
    )
    runs.command("list", epilog=epilog)(list_runs)
    runs.command("get", epilog=epilog)(get_run)
    runs.command("cancel", epilog=epilog)(cancel_run)
    recovery.register(runs)
    app.add_typer(runs, name="runs")

    events = typer.Typer(help="Send events for contacts.", no_args_is_help=True)
    events.command("send", epilog=epilog)(send_event)
    app.add_typer(events, name="events")
