"""Every success answer of every route is declared in the OpenAPI, as a named, typed schema."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from api.app import create_app
from api.schemas import contacts, domains, events, runs, segments
from api.serialize_automations import run_item
from api.wire import LIMIT_PATTERN, parse_cursor
from engine.dispatch import NullDispatcher
from engine.errors import InvalidInput
from engine.metrics import parse_window
from engine.reports import parse_run_statuses
from engine.settings import Settings
from engine.store.reports import RunSummary
from models.enums import RunStatus

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder: Path = tmp_path_factory.mktemp("openapi")
    app: FastAPI = create_app(
        Settings(database_url=f"sqlite:///{folder / 'unused.sqlite3'}"),
        dispatcher=NullDispatcher(),
    )
    return app.openapi()


def operations(schema: dict[str, Any]) -> Iterator[Operation]:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def successes(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {code: r for code, r in operation["responses"].items() if code.startswith("2")}


def component(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix), ref
    found: dict[str, Any] = schema["components"]["schemas"][ref.removeprefix(prefix)]
    return found


def test_every_route_declares_a_typed_success_answer(openapi: dict[str, Any]) -> None:
    """A JSON answer is a named model with properties; a page or a text body is a string."""
    problems = []
    for method, path, operation in operations(openapi):
        answers = successes(operation)
        if not answers:
            problems.append(f"{method} {path}: no success answer declared")
        for code, answer in answers.items():
            content = answer.get("content") or {}
            if not content:
                problems.append(f"{method} {path} {code}: no body declared")
            for media, declared in content.items():
                body = declared.get("schema") or {}
                if media == "application/json":
                    ref = body.get("$ref")
                    if ref is None or not component(openapi, ref).get("properties"):
                        problems.append(f"{method} {path} {code}: untyped JSON {body}")
                elif body.get("type") != "string":
                    problems.append(f"{method} {path} {code}: {media} without a string schema")
    assert problems == []


def test_every_answer_model_names_its_fields_and_requires_them(openapi: dict[str, Any]) -> None:
    """Generated clients get non-optional fields: an answer always carries every key."""
    problems = []
    for method, path, operation in operations(openapi):
        for code, answer in successes(operation).items():
            ref = (answer.get("content", {}).get("application/json", {}).get("schema") or {}).get(
                "$ref"
            )
            if ref is None:
                continue
            model = component(openapi, ref)
            missing = set(model["properties"]) - set(model.get("required", []))
            if missing:
                problems.append(f"{method} {path} {code}: optional {sorted(missing)}")
    assert problems == []


def test_routes_with_a_key_declare_the_bearer_scheme(openapi: dict[str, Any]) -> None:
    scheme = openapi["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "http", "scheme": "bearer", "description": "An API key"}
    public = {"/health", "/health/sweeper", "/ready", "/metrics", "/unsubscribe/{token}"}
    for method, path, operation in operations(openapi):
        expected = None if path in public else [{"ApiKey": []}]
        assert operation.get("security") == expected, f"{method} {path}"


def test_the_error_shape_stays_declared_on_every_route(openapi: dict[str, Any]) -> None:
    for method, path, operation in operations(openapi):
        for code in ("401", "422", "429", "500"):
            assert code in operation["responses"], f"{method} {path} {code}"


@pytest.mark.parametrize(
    ("full", "item"),
    [
        (contacts.Contact, contacts.ContactItem),
        (segments.Segment, segments.SegmentItem),
        (domains.Domain, domains.DomainItem),
        (events.EventDefinition, events.EventDefinitionItem),
        (runs.Run, runs.RunItem),
    ],
)
def test_a_full_object_is_its_list_item_with_object_first(
    full: type[BaseModel], item: type[BaseModel]
) -> None:
    fields = list(full.model_fields)
    assert fields[0] == "object"
    assert fields[1 : len(item.model_fields) + 1] == list(item.model_fields)


def test_the_runs_list_fast_path_writes_exactly_a_run_item() -> None:
    """The runs list bypasses the model (speed); its dicts must be what RunList declares."""
    now = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)
    summary = RunSummary(
        id=uuid.uuid4(),
        automation_id=uuid.uuid4(),
        contact_id=None,
        status="running",
        started_at=now,
        completed_at=None,
        created_at=now,
    )
    item = run_item(summary)
    assert list(item) == list(runs.RunItem.model_fields)
    assert runs.RunItem.model_validate(item).model_dump(mode="json") == item
    assert item["created_at"] == "2026-10-01 12:00:00.000000+00"


# The parameters the routes read with parse_id: an id of ours, never an email, alias or name.
UUID_PARAMETERS = {
    "api_key_id",
    "automation_id",
    "bulk_id",
    "domain_id",
    "run_id",
    "segment_id",
    "after",
    "before",
}


def test_ids_cursors_and_limits_are_documented_as_the_routes_check_them(
    openapi: dict[str, Any],
) -> None:
    """So a generated client, and a fuzzer, sends what the route accepts (schemathesis counted
    39 of 62 operations whose documented parameters the API mostly refused)."""
    documented: set[str] = set()
    for method, path, operation in operations(openapi):
        for parameter in operation.get("parameters", []):
            name, schema = parameter["name"], parameter["schema"]
            if name in UUID_PARAMETERS:
                assert schema.get("format") == "uuid", (method, path, name)
                documented.add(name)
            elif name == "limit":
                assert schema.get("pattern") == LIMIT_PATTERN, (method, path)
                documented.add(name)
    assert documented == UUID_PARAMETERS | {"limit"}


def test_the_documented_limit_is_what_the_route_accepts() -> None:
    """Every whole number the pattern allows is a limit the route takes, and nothing else:
    not the other spellings int() reads."""
    others = ["", "1.5", "ten", "1e2", "+5", "05", " 5", "5 ", "1_0", "\uff15", "5\n"]
    for limit in [str(n) for n in range(-1, 103)] + others:
        documented = re.fullmatch(LIMIT_PATTERN, limit) is not None
        try:
            accepted = parse_cursor(limit, None, None).limit == int(limit)
        except (InvalidInput, ValueError):
            accepted = False
        assert accepted == documented, limit


def test_the_documented_run_filters_and_metrics_window_are_what_the_routes_accept(
    openapi: dict[str, Any],
) -> None:
    """What the documentation allows, the route takes (the route also forgives spaces and
    empty entries in `status`, which the documentation leaves out)."""
    runs = openapi["paths"]["/automations/{automation_id}/runs"]["get"]["parameters"]
    status = next(p["schema"] for p in runs if p["name"] == "status")
    for text in ["failed", "failed,skipped", ",".join(RunStatus), "nope", "failed,", "Failed"]:
        if re.fullmatch(status["pattern"], text):
            assert parse_run_statuses(text) == {RunStatus(name) for name in text.split(",")}
        else:
            assert text in {"nope", "failed,", "Failed"}
    window = openapi["paths"]["/automations/{automation_id}/metrics"]["get"]["parameters"]
    schemas = {p["name"]: p["schema"] for p in window}
    assert (schemas["start"]["format"], schemas["end"]["format"]) == ("date-time", "date-time")
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    for granularity in schemas["granularity"]["enum"]:
        assert parse_window(None, None, granularity, now=now).granularity == granularity


def test_bodies_document_the_formats_the_engine_checks(openapi: dict[str, Any]) -> None:
    """An event names its contact by exactly one of id and email; addresses are emails, a
    domain a host name, a contact id a UUID (engine/ingest.py, engine/addresses.py)."""
    schemas = openapi["components"]["schemas"]
    event = schemas["SendEvent"]
    assert event["oneOf"] == [{"required": ["contact_id"]}, {"required": ["email"]}]
    assert (
        event["properties"]["contact_id"]["format"],
        event["properties"]["email"]["format"],
    ) == (
        "uuid",
        "email",
    )
    assert schemas["CreateContact"]["properties"]["email"]["format"] == "email"
    assert schemas["CreateDomain"]["properties"]["name"]["format"] == "hostname"
