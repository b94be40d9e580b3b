"""The automations endpoints over real HTTP: create, list, get, update, delete, duplicate, stop."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.factories import chain, unique_email
from tests.integration.harness import API_KEY, ApiServer, Stack

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$")
TRIGGER = {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}}
STEPS = [
    TRIGGER,
    {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
    {"key": "touch", "type": "update_contact", "config": {"first_name": "Touched"}},
]
CONNECTIONS = chain("start", "pause", "touch")


def create(api: httpx.Client, name: str = "Welcome", **fields: Any) -> str:
    body = {"name": name, "steps": STEPS, "connections": CONNECTIONS, **fields}
    answer = api.post("/automations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def runs(api: httpx.Client, automation_id: str) -> list[dict[str, Any]]:
    answer = api.get(f"/automations/{automation_id}/runs")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def waiting_run(api: httpx.Client, stack: Stack, automation_id: str) -> str:
    """Send the trigger event and wait until the run sits in its delay."""
    sent = api.post("/events/send", json={"event": "user.created", "email": unique_email()})
    assert sent.status_code == 202
    stack.wait_for(lambda: len(runs(api, automation_id)) == 1, what="a run")
    run_id = runs(api, automation_id)[0]["id"]
    stack.wait_step(uuid.UUID(run_id), "pause", "waiting")
    return str(run_id)


def test_create_then_get_answers_every_field(api: httpx.Client) -> None:
    answer = api.post(
        "/automations", json={"name": "Welcome", "steps": STEPS, "connections": CONNECTIONS}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"object", "id"}
    assert body["object"] == "automation"
    automation_id = body["id"]
    assert uuid.UUID(automation_id)

    got = api.get(f"/automations/{automation_id}")
    assert got.status_code == 200
    detail = got.json()
    assert set(detail) == {
        "object",
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "steps",
        "connections",
        "runs_cancelling",  # our addition
    }
    assert detail["object"] == "automation"
    assert detail["runs_cancelling"] is False
    assert detail["id"] == automation_id
    assert detail["name"] == "Welcome"
    assert detail["status"] == "disabled"
    assert TIME.match(detail["created_at"]) and TIME.match(detail["updated_at"])
    assert detail["steps"] == [
        TRIGGER,
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "touch", "type": "contact_update", "config": {"first_name": "Touched"}},
    ]
    assert detail["connections"] == [
        {"from": "start", "to": "pause", "type": "default"},
        {"from": "pause", "to": "touch", "type": "default"},
    ]


def test_create_enabled(api: httpx.Client) -> None:
    automation_id = create(api, status="enabled")
    assert api.get(f"/automations/{automation_id}").json()["status"] == "enabled"


@pytest.mark.parametrize(
    ("steps", "connections", "fragments"),
    [
        (
            [*STEPS, {"key": "again", "type": "trigger", "config": {"event_name": "x"}}],
            CONNECTIONS,
            ['step "again"', "exactly one trigger"],
        ),
        (STEPS, [*CONNECTIONS, {"from": "touch", "to": "pause"}], ['"pause"', "cycle"]),
        (STEPS, chain("start", "pause"), ['"touch"', "reachable"]),
        (STEPS, [*CONNECTIONS, {"from": "touch", "to": "nowhere"}], ['"nowhere"', "not exist"]),
        (
            STEPS,
            [{"from": "start", "to": "pause", "type": "condition_met"}, *CONNECTIONS[1:]],
            ['step "start"', '"condition_met"'],
        ),
        (
            [TRIGGER, {"key": "pause", "type": "delay", "config": {"duration": "9 years"}}],
            chain("start", "pause"),
            ['step "pause"', "duration"],
        ),
        ([], [], ["steps", "non-empty"]),
    ],
    ids=[
        "two-triggers",
        "cycle",
        "unreachable",
        "unknown-key",
        "bad-branch",
        "bad-duration",
        "no-steps",
    ],
)
def test_invalid_graphs_answer_422_naming_the_step_and_rule(
    api: httpx.Client, steps: list[Any], connections: list[Any], fragments: list[str]
) -> None:
    answer = api.post(
        "/automations", json={"name": "x", "steps": steps, "connections": connections}
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["statusCode"] == 422
    assert body["name"] == "validation_error"
    for fragment in fragments:
        assert fragment in body["message"]
    assert api.get("/automations").json()["data"] == []


def test_create_with_missing_or_unknown_fields(api: httpx.Client) -> None:
    missing = api.post("/automations", json={"name": "x", "steps": STEPS})
    assert missing.status_code == 422
    assert missing.json() == {
        "statusCode": 422,
        "name": "missing_required_field",
        "message": "Missing `connections` field.",
    }
    extra = api.post(
        "/automations",
        json={"name": "x", "steps": STEPS, "connections": CONNECTIONS, "colour": "red"},
    )
    assert extra.status_code == 422
    assert extra.json()["name"] == "validation_error"
    blank = api.post("/automations", json={"name": " ", "steps": STEPS, "connections": []})
    assert blank.status_code == 422
    assert "name" in blank.json()["message"]


def test_list_filters_pages_and_hides_deleted(api: httpx.Client) -> None:
    ids = [create(api, f"a{i}", status="enabled" if i % 2 else "disabled") for i in range(5)]
    newest_first = list(reversed(ids))
    listed = api.get("/automations").json()
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [item["id"] for item in listed["data"]] == newest_first
    first = listed["data"][0]
    assert set(first) == {"id", "name", "status", "created_at", "updated_at"}
    assert first["name"] == "a4" and first["status"] == "disabled"
    assert TIME.match(first["created_at"]) and TIME.match(first["updated_at"])

    enabled = api.get("/automations", params={"status": "enabled"}).json()["data"]
    assert [item["id"] for item in enabled] == [ids[3], ids[1]]
    assert api.get("/automations", params={"status": "paused"}).status_code == 422

    page = api.get("/automations", params={"limit": 2}).json()
    assert [i["id"] for i in page["data"]] == newest_first[:2] and page["has_more"] is True
    page = api.get("/automations", params={"limit": 2, "after": newest_first[1]}).json()
    assert [i["id"] for i in page["data"]] == newest_first[2:4] and page["has_more"] is True
    page = api.get("/automations", params={"limit": 2, "after": newest_first[3]}).json()
    assert [i["id"] for i in page["data"]] == newest_first[4:] and page["has_more"] is False
    page = api.get("/automations", params={"limit": 2, "before": newest_first[2]}).json()
    assert [i["id"] for i in page["data"]] == newest_first[:2] and page["has_more"] is False

    assert api.delete(f"/automations/{ids[4]}").status_code == 200
    assert [i["id"] for i in api.get("/automations").json()["data"]] == newest_first[1:]
    # A page's last automation deleted since: the next page goes on from where it was.
    assert api.delete(f"/automations/{ids[2]}").status_code == 200
    page = api.get("/automations", params={"limit": 2, "after": ids[2]}).json()
    assert [i["id"] for i in page["data"]] == [ids[1], ids[0]] and page["has_more"] is False
    page = api.get("/automations", params={"limit": 2, "before": ids[2]}).json()
    assert [i["id"] for i in page["data"]] == [ids[3]] and page["has_more"] is False


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"after": "x"}],
)
def test_list_rejects_bad_paging(api: httpx.Client, params: dict[str, Any]) -> None:
    answer = api.get("/automations", params=params)
    assert answer.status_code == 422
    assert answer.json()["name"] == "invalid_parameter"


def test_list_rejects_both_cursors(api: httpx.Client) -> None:
    a, b = create(api), create(api)
    answer = api.get("/automations", params={"after": a, "before": b})
    assert answer.status_code == 422
    assert answer.json()["name"] == "validation_error"


def test_update_name_status_and_graph(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api)
    before = api.get(f"/automations/{automation_id}").json()
    rt_stack.clock.advance(dt.timedelta(seconds=5))
    answer = api.patch(f"/automations/{automation_id}", json={"name": "Renamed"})
    assert answer.status_code == 200
    assert answer.json() == {"object": "automation", "id": automation_id}
    new_steps = [TRIGGER, {"key": "only", "type": "contact_update", "config": {"last_name": "L"}}]
    answer = api.patch(
        f"/automations/{automation_id}",
        json={"steps": new_steps, "connections": chain("start", "only")},
    )
    assert answer.status_code == 200
    assert api.patch(f"/automations/{automation_id}", json={"status": "enabled"}).status_code == 200

    after = api.get(f"/automations/{automation_id}").json()
    assert after["name"] == "Renamed" and after["status"] == "enabled"
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]
    assert after["steps"] == new_steps
    assert after["connections"] == [{"from": "start", "to": "only", "type": "default"}]


def test_update_refusals(api: httpx.Client) -> None:
    automation_id = create(api, status="enabled")
    path = f"/automations/{automation_id}"
    graph = api.patch(path, json={"steps": STEPS, "connections": CONNECTIONS})
    assert graph.status_code == 422
    assert graph.json()["name"] == "validation_error"
    assert "enabled" in graph.json()["message"]

    nothing = api.patch(path, json={})
    assert nothing.status_code == 422
    assert nothing.json()["name"] == "validation_error"
    assert "at least one" in nothing.json()["message"]

    half = api.patch(path, json={"status": "disabled", "steps": STEPS})
    assert half.status_code == 422
    assert "together" in half.json()["message"]
    bad_graph = api.patch(
        path, json={"status": "disabled", "steps": STEPS, "connections": chain("start", "pause")}
    )
    assert bad_graph.status_code == 422 and '"touch"' in bad_graph.json()["message"]
    assert api.get(path).json()["status"] == "enabled"  # nothing was written


def test_delete_cancels_runs_and_answers_404_afterwards(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api, status="enabled")
    run_id = waiting_run(api, rt_stack, automation_id)
    answer = api.delete(f"/automations/{automation_id}")
    assert answer.status_code == 200
    assert answer.json() == {
        "object": "automation",
        "id": automation_id,
        "deleted": True,
        "runs_cancelling": False,
    }

    assert rt_stack.run(uuid.UUID(run_id)).status == "cancelled"
    for method, path in [
        ("GET", f"/automations/{automation_id}"),
        ("DELETE", f"/automations/{automation_id}"),
        ("GET", f"/automations/{automation_id}/runs"),
    ]:
        gone = api.request(method, path)
        assert gone.status_code == 404
        assert gone.json() == {
            "statusCode": 404,
            "name": "not_found",
            "message": "Automation not found",
        }


def test_duplicate_is_a_disabled_copy_with_the_same_graph(api: httpx.Client) -> None:
    automation_id = create(api, "Onboarding", status="enabled")
    answer = api.post(f"/automations/{automation_id}/duplicate")
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"object", "id"} and body["object"] == "automation"
    assert body["id"] != automation_id

    original = api.get(f"/automations/{automation_id}").json()
    copy = api.get(f"/automations/{body['id']}").json()
    assert copy["name"] == "Onboarding (Copy)"
    assert copy["status"] == "disabled"
    assert copy["steps"] == original["steps"]
    assert copy["connections"] == original["connections"]
    assert original["status"] == "enabled"


def test_stop_lets_runs_finish_unless_told_to_cancel(api: httpx.Client, rt_stack: Stack) -> None:
    automation_id = create(api, status="enabled")
    run_id = waiting_run(api, rt_stack, automation_id)
    answer = api.post(f"/automations/{automation_id}/stop")
    assert answer.status_code == 200
    assert answer.json() == {
        "object": "automation",
        "id": automation_id,
        "status": "disabled",
        "runs_cancelling": False,
    }
    assert api.get(f"/automations/{automation_id}").json()["status"] == "disabled"
    assert rt_stack.run(uuid.UUID(run_id)).status == "running"

    # The SDK posts an empty object; that is the default, too.
    assert api.post(f"/automations/{automation_id}/stop", json={}).status_code == 200
    assert rt_stack.run(uuid.UUID(run_id)).status == "running"
    answer = api.post(f"/automations/{automation_id}/stop", json={"cancel_runs": True})
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["runs_cancelling"]) == ("disabled", False)
    assert rt_stack.run(uuid.UUID(run_id)).status == "cancelled"
    assert api.get(f"/automations/{automation_id}").json()["runs_cancelling"] is False
    assert api.post(f"/automations/{automation_id}/stop", json={"cancel": 1}).status_code == 422


UNKNOWN = "00000000-0000-4000-8000-000000000001"  # the same in every xdist worker


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/automations/{id}"),
        ("PATCH", "/automations/{id}"),
        ("DELETE", "/automations/{id}"),
        ("POST", "/automations/{id}/duplicate"),
        ("POST", "/automations/{id}/stop"),
        ("GET", "/automations/{id}/runs"),
        ("GET", "/automations/{id}/metrics"),
        ("GET", "/automations/{id}/runs/" + UNKNOWN),
        ("POST", "/automations/{id}/runs/" + UNKNOWN + "/cancel"),
    ],
)
def test_unknown_and_malformed_ids(api: httpx.Client, method: str, path: str) -> None:
    body = {"name": "x"} if method == "PATCH" else None
    unknown = api.request(method, path.format(id=uuid.uuid4()), json=body)
    assert unknown.status_code == 404
    assert unknown.json() == {
        "statusCode": 404,
        "name": "not_found",
        "message": "Automation not found",
    }
    malformed = api.request(method, path.format(id="not-a-uuid"), json=body)
    assert malformed.status_code == 422
    assert malformed.json() == {
        "statusCode": 422,
        "name": "invalid_parameter",
        "message": "The `automation_id` must be a valid UUID.",
    }


def test_the_official_sdk(
    api: httpx.Client, api_server: ApiServer, rt_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    resend = pytest.importorskip("resend")
    # The SDK reads RESEND_API_URL at import time; its module attribute is what requests use.
    monkeypatch.setattr(resend, "api_key", API_KEY)
    monkeypatch.setattr(resend, "api_url", api_server.base_url)
    Automations = resend.Automations

    created = Automations.create({"name": "SDK", "steps": STEPS, "connections": CONNECTIONS})
    automation_id = created["id"]
    assert created["object"] == "automation"
    got = Automations.get(automation_id)
    assert got["name"] == "SDK" and got["status"] == "disabled"
    assert [s["key"] for s in got["steps"]] == ["start", "pause", "touch"]
    listed = Automations.list({"status": "disabled", "limit": 10})
    assert [a["id"] for a in listed["data"]] == [automation_id] and listed["has_more"] is False
    updated = Automations.update({"automation_id": automation_id, "status": "enabled"})
    assert updated["id"] == automation_id

    run_id = waiting_run(api, rt_stack, automation_id)
    runs_page = Automations.Runs.list(automation_id, {"status": "running"})
    assert [r["id"] for r in runs_page["data"]] == [run_id]
    run = Automations.Runs.get(automation_id, run_id)
    assert run["object"] == "automation_run" and run["status"] == "running"
    assert [(s["key"], s["status"]) for s in run["steps"]] == [
        ("start", "completed"),
        ("pause", "waiting"),
    ]
    stopped = Automations.stop(automation_id)
    assert stopped["status"] == "disabled"
    assert Automations.duplicate(automation_id)["object"] == "automation"
    with pytest.raises(resend.exceptions.ResendError) as raised:
        Automations.get(str(uuid.uuid4()))
    assert "Automation not found" in str(raised.value)
    assert Automations.remove(automation_id)["deleted"] is True
