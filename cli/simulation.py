"""`automations simulate`: an automation's run on virtual time, checked in CI with --expect."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import ApiKey, ApiUrl, AsJson, plain_json, read_document, too_deep
from cli.expectations import BadExpectations, Case, read_cases, unmet
from cli.http import DEFAULT_API_URL, EXIT_CODES_HELP, Api, ExitCode, fail
from engine.errors import InvalidInput

UUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
EPILOG = (
    EXIT_CODES_HELP.removesuffix(".")
    + "; 4 the simulated run would fail, or an expectation is not met."
)


def _automation(target: str) -> dict[str, Any]:
    """`automation` (from a file) or `automation_id` for the request."""
    file = Path(target)
    if file.is_file() or file.suffix.lower() in (".json", ".yaml", ".yml"):
        document = read_document(file)
        if not isinstance(document, dict) or "steps" not in document:
            fail(f"{file} must hold an automation: steps and connections", ExitCode.BAD_INPUT)
        graph = {"steps": document["steps"], "connections": document.get("connections", [])}
        return {"automation": plain_json(graph, str(file))}
    if UUID.fullmatch(target):
        return {"automation_id": target}
    fail(f"{target!r} is neither a file nor an automation id", ExitCode.BAD_INPUT)


def _contact(value: str) -> dict[str, Any]:
    """--contact: a file of contact fields, an email address (the stored contact with it, if
    there is one), or a stored contact's id."""
    file = Path(value)
    if file.is_file() or file.suffix.lower() in (".json", ".yaml", ".yml"):
        document = read_document(file)
        if not isinstance(document, dict):
            fail(f"{file} must hold a mapping: email, first_name, ...", ExitCode.BAD_INPUT)
        contact: dict[str, Any] = plain_json(document, str(file))
        return contact
    if UUID.fullmatch(value):
        return {"id": value}
    if "@" in value:
        return {"email": value}
    fail(f"--contact {value!r}: give a file, an email address or a contact id", ExitCode.BAD_INPUT)


def _payload(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"--payload is not valid JSON: {exc.msg} (column {exc.colno})", ExitCode.BAD_INPUT)
    except RecursionError:
        too_deep("--payload")
    if not isinstance(data, dict):
        fail('--payload must be a JSON object, e.g. \'{"plan": "pro"}\'', ExitCode.BAD_INPUT)
    return data


def _later(text: Any, where: str) -> dict[str, Any]:
    """One later event: `NAME after DURATION [PAYLOAD]`, or already a mapping (from a file)."""
    if isinstance(text, dict):
        return text
    text = str(text)
    from engine.scenario import parse_later_event  # the graph's modules: only for --then

    try:
        return parse_later_event(text)
    except InvalidInput as error:
        # A payload can be megabytes: the line names the text by its ends.
        shown = repr(text) if len(text) <= 80 else f"{text[:48]!r}...{text[-24:]!r}"
        fail(f"{where} {shown}: {error.message}", ExitCode.BAD_INPUT)


def _request(base: dict[str, Any], defaults: dict[str, Any], case: Case) -> dict[str, Any]:
    """The simulation request of one case: its inputs over the file's over the options'."""
    inputs = {**defaults, **case.inputs}
    contact = {**defaults.get("contact", {}), **case.inputs.get("contact", {})}
    if not contact:
        fail("give --contact (or `contact` in the --expect file)", ExitCode.BAD_INPUT)
    body = {**base, "contact": contact, "event": {}}
    if inputs.get("event") is not None:
        body["event"]["name"] = inputs["event"]
    if inputs.get("payload") is not None:
        body["event"]["payload"] = inputs["payload"]
    then = inputs.get("then") or []
    where = "--then" if "then" not in case.inputs else f"{case.name}: then"
    body["events"] = [_later(item, where) for item in then]
    if inputs.get("until") is not None:
        body["until"] = str(inputs["until"])
    plain: dict[str, Any] = plain_json(body, "the simulation")
    return plain


def _show(*renderables: Any) -> None:
    from rich.console import Console

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    for renderable in renderables:
        console.print(renderable)


def simulate(
    target: Annotated[
        str, typer.Argument(metavar="FILE_OR_ID", help="An automation file, or a stored id.")
    ],
    contact: Annotated[
        str | None,
        typer.Option(
            help="A YAML or JSON file of contact fields, an email (the stored contact, if any), "
            "or a contact id."
        ),
    ] = None,
    event: Annotated[
        str | None, typer.Option(help="The trigger event's name (checked against the trigger).")
    ] = None,
    payload: Annotated[str | None, typer.Option(help="The trigger event's JSON payload.")] = None,
    then: Annotated[
        list[str] | None,
        typer.Option(help="A later event: 'NAME after DURATION [JSON]'; repeat for more."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Stop after this much virtual time, e.g. '10 days'.")
    ] = None,
    expect: Annotated[
        Path | None, typer.Option(help="A YAML file of expectations (see cli/README.md).")
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Simulate a run on virtual time and print its path; nothing is stored or sent.

    Exits 4 when the run would fail, or, with --expect, when an expectation is not met.
    """
    defaults: dict[str, Any] = {
        "contact": _contact(contact) if contact is not None else {},
        "event": event,
        "payload": _payload(payload) if payload is not None else None,
        "then": list(then or []),
        "until": until,
    }
    cases = [Case("")]
    if expect is not None:
        try:
            file_defaults, cases = read_cases(read_document(expect))
        except BadExpectations as error:
            fail(f"{expect}: {error}", ExitCode.BAD_INPUT)
        defaults = _merged(defaults, file_defaults)
    base = _automation(target)
    api = Api(api_url.rstrip("/") or DEFAULT_API_URL, api_key or None)
    requests = [_request(base, defaults, case) for case in cases]
    results = []
    for case, body in zip(cases, requests, strict=True):
        answer = api.call("POST", "/automations/simulate", body=body, subject=case.name or None)
        results.append((case, answer, unmet(case.expect, answer)))
    _report(results, as_json=as_json, checked=expect is not None)
    if any(problems for _, _, problems in results):
        raise typer.Exit(int(ExitCode.FAILED))


def _merged(options: dict[str, Any], file: dict[str, Any]) -> dict[str, Any]:
    """The file's defaults, except where an option was given on the command line."""
    merged = {**options}
    for key, value in file.items():
        if key == "contact":
            merged["contact"] = {**_file_contact(value), **options["contact"]}
        elif options.get(key) in (None, []):
            merged[key] = value
    return merged


def _file_contact(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail("`contact` in the --expect file must be a mapping", ExitCode.BAD_INPUT)
    return value


def _report(results: list[tuple[Case, Any, list[str]]], *, as_json: bool, checked: bool) -> None:
    if as_json:
        if not checked:
            typer.echo(json.dumps(results[0][1], indent=2, ensure_ascii=False))
            return
        cases = [
            {"name": c.name, "passed": not p, "unmet": p, "simulation": a} for c, a, p in results
        ]
        passed = all(case["passed"] for case in cases)
        body = {"object": "simulation_check", "passed": passed, "cases": cases}
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    for case, answer, problems in results:
        if case.name:
            mark = "✗" if problems else "✓"
            typer.echo(f"{mark} {case.name}: {answer.get('status')} after {answer.get('duration')}")
        if problems or not case.name:
            from cli import render

            _show(render.simulation_view(answer))
        for problem in problems:
            typer.echo(f"  unmet: {problem}")
    if checked:
        failed = sum(1 for _, _, problems in results if problems)
        summary = f"{len(results) - failed} of {len(results)} met their expectations"
        typer.echo(summary if failed else f"all {len(results)} met their expectations")


def register(app: typer.Typer) -> None:
    """Add the `simulate` command to the app."""
    app.command("simulate", epilog=EPILOG)(simulate)
