"""The client commands as a user runs them: the installed `automations` script over real HTTP."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.factories import unique_email
from tests.integration.harness import API_KEY, ApiServer, Stack, free_port

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

SCRIPT = shutil.which("automations", path=str(Path(sys.executable).parent))
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# kind=wait sits in a one-hour delay, kind=now completes at once, no kind fails in `check`.
ONBOARDING_YAML = """\
name: onboarding
status: {status}
steps:
  - key: start
    type: trigger
    config: {{event_name: user.created}}
  - key: check
    type: condition
    config:
      rule: {{field: event.kind, operator: eq, value: wait}}
  - key: pause
    type: delay
    config: {{duration: {duration}}}
  - key: after
    type: contact_update
    config: {{first_name: After}}
  - key: done
    type: contact_update
    config:
      properties: {{done: true}}
connections:
  - {{from: start, to: check}}
  - {{from: check, to: pause, type: condition_met}}
  - {{from: check, to: done, type: condition_not_met}}
  - {{from: pause, to: after}}
"""
STEPS = [
    {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
    {"key": "hello", "type": "contact_update", "config": {"first_name": "Hello"}},
]
CONNECTIONS = [{"from": "start", "to": "hello"}]


class Cli:
    """Runs the console script with the API's address and key in the environment."""

    def __init__(self, base_url: str, cwd: Path) -> None:
        assert SCRIPT, "the `automations` script is missing: pip install -e '.[dev]'"
        self.base_url, self.cwd = base_url, cwd

    def __call__(
        self, *args: str, expect: int = 0, key: str | None = API_KEY, url: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
        env["AUTOMATIONS_API_URL"] = url or self.base_url
        if key is not None:
            env["AUTOMATIONS_API_KEY"] = key
        assert SCRIPT is not None
        done = subprocess.run(
            [SCRIPT, *args], env=env, cwd=self.cwd, capture_output=True, text=True, timeout=60
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
        if expect == 0:
            assert done.stderr == ""
        return done


@pytest.fixture
def cli(api: httpx.Client, api_server: ApiServer, tmp_path: Path) -> Cli:
    """The script against a live API over an empty database."""
    return Cli(api_server.base_url, tmp_path)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one `error:` line a failed command prints, with nothing on stdout."""
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def write_yaml(path: Path, *, status: str = "disabled", duration: str = "1 hour") -> Path:
    path.write_text(ONBOARDING_YAML.format(status=status, duration=duration))
    return path


def applied(done: subprocess.CompletedProcess[str], action: str) -> str:
    match = re.fullmatch(rf"{action} ({UUID})\n", done.stdout)
    assert match, done.stdout
    return match.group(1)


def create(api: httpx.Client, name: str = "hello", status: str = "enabled") -> str:
    body = {"name": name, "status": status, "steps": STEPS, "connections": CONNECTIONS}
    answer = api.post("/automations", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def runs(api: httpx.Client, automation_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = api.get(f"/automations/{automation_id}/runs").json()["data"]
    return data


def wait_runs(stack: Stack, api: httpx.Client, automation_id: str, **expected: int) -> None:
    stack.wait_for(
        lambda: Counter(r["status"] for r in runs(api, automation_id)) == Counter(expected),
        what=f"runs {expected}",
    )


# -- happy paths -------------------------------------------------------------------------------


def test_apply_yaml_creates_then_updates(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    file = write_yaml(tmp_path / "onboarding.yaml")
    automation_id = applied(cli("apply", str(file)), "created")
    stored = api.get(f"/automations/{automation_id}").json()
    assert (stored["name"], stored["status"]) == ("onboarding", "disabled")
    assert [s["key"] for s in stored["steps"]] == ["start", "check", "pause", "after", "done"]

    write_yaml(file, status="enabled", duration="2 hours")
    assert applied(cli("apply", str(file)), "updated") == automation_id
    stored = api.get(f"/automations/{automation_id}").json()
    assert stored["status"] == "enabled"
    assert stored["steps"][2]["config"] == {"duration": "2 hours"}
    assert len(api.get("/automations").json()["data"]) == 1

    # The same file again: nothing is sent, so an enabled automation accepts it, untouched.
    before = api.get(f"/automations/{automation_id}").json()
    assert applied(cli("apply", str(file)), "unchanged") == automation_id
    assert api.get(f"/automations/{automation_id}").json() == before
    # A new status alone is sent alone: the graph of an enabled automation is left out.
    write_yaml(file, status="disabled", duration="2 hours")
    assert applied(cli("apply", str(file)), "updated") == automation_id
    write_yaml(file, status="enabled", duration="2 hours")
    assert applied(cli("apply", str(file)), "updated") == automation_id
    write_yaml(file, status="enabled", duration="3 hours")
    refused = error_line(cli("apply", str(file), expect=1))
    assert "disable it first" in refused and "HTTP 422" in refused
    # Disabling in the same file is allowed: one PATCH disables and replaces the graph.
    write_yaml(file, status="disabled", duration="3 hours")
    assert applied(cli("apply", str(file)), "updated") == automation_id
    assert api.get(f"/automations/{automation_id}").json()["steps"][2]["config"] == {
        "duration": "3 hours"
    }


def test_apply_json_with_and_without_id(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    file = tmp_path / "hello.json"
    file.write_text(json.dumps({"name": "from json", "steps": STEPS, "connections": CONNECTIONS}))
    created = json.loads(cli("apply", str(file), "--json").stdout)
    automation_id = created["id"]
    assert created == {"object": "automation", "id": automation_id, "action": "created"}

    file.write_text(json.dumps({"id": automation_id, "name": "renamed", "status": "enabled"}))
    assert applied(cli("apply", str(file)), "updated") == automation_id
    stored = api.get(f"/automations/{automation_id}").json()
    assert (stored["name"], stored["status"]) == ("renamed", "enabled")
    file.write_text(json.dumps({"id": automation_id, "steps": STEPS, "connections": CONNECTIONS}))
    assert applied(cli("apply", str(file)), "unchanged") == automation_id

    create(api, name="twin")
    create(api, name="twin")
    file.write_text(json.dumps({"name": "twin", "steps": STEPS, "connections": CONNECTIONS}))
    assert "2 automations are named 'twin'" in error_line(cli("apply", str(file), expect=2))


def test_list_automations(cli: Cli, api: httpx.Client) -> None:
    enabled = create(api, name="welcome series", status="enabled")
    disabled = create(api, name="win back", status="disabled")
    table = cli("list").stdout
    assert "welcome series" in table and "win back" in table
    assert enabled in table and disabled in table and "\x1b[" not in table

    page = json.loads(cli("list", "--status", "enabled", "--json").stdout)
    assert [item["id"] for item in page["data"]] == [enabled]
    assert page["has_more"] is False
    first = cli("list", "--limit", "1").stdout
    assert disabled in first and enabled not in first
    assert f"more: repeat with --after {disabled}" in first
    assert enabled in cli("list", "--after", disabled).stdout
    assert cli("list", "--status", "disabled", "--after", disabled).stdout == "no automations\n"


def test_events_send_and_the_runs_commands(
    cli: Cli, api: httpx.Client, rt_stack: Stack, tmp_path: Path
) -> None:
    automation_id = applied(
        cli("apply", str(write_yaml(tmp_path / "a.yml", status="enabled"))), "created"
    )
    address = unique_email("cli")
    sent = cli("events", "send", "user.created", "--email", address, "--payload", '{"kind":"wait"}')
    assert sent.stdout == f"sent user.created for {address}\n"
    cli("events", "send", "user.created", "--email", unique_email(), "--payload", '{"kind":"now"}')
    cli("events", "send", "user.created", "--email", unique_email())
    wait_runs(rt_stack, api, automation_id, running=1, completed=1, failed=1)
    by_status = {run["status"]: run["id"] for run in runs(api, automation_id)}
    rt_stack.wait_step(uuid.UUID(by_status["running"]), "pause", "waiting")

    failed = json.loads(cli("runs", "list", automation_id, "--status", "failed", "--json").stdout)
    assert [run["id"] for run in failed["data"]] == [by_status["failed"]]
    table = cli("runs", "list", automation_id, "--status", "failed,running").stdout
    assert by_status["failed"] in table and by_status["running"] in table
    assert by_status["completed"] not in table and "so far" in table
    refused = error_line(cli("runs", "list", automation_id, "--status", "bogus", expect=1))
    assert "`bogus`" in refused and "(validation_error, HTTP 422)" in refused

    detail = cli("runs", "get", automation_id, by_status["failed"]).stdout
    assert "user.created" in detail and "condition" in detail and "event.kind" in detail
    run = json.loads(cli("runs", "get", automation_id, by_status["completed"], "--json").stdout)
    assert run["event"]["payload"] == {"kind": "now"}
    assert [step["key"] for step in run["steps"]] == ["start", "check", "pause", "done", "after"]

    waiting = by_status["running"]
    assert cli("runs", "cancel", automation_id, waiting).stdout == f"cancelled run {waiting}\n"
    assert api.get(f"/automations/{automation_id}/runs/{waiting}").json()["status"] == "cancelled"
    done = error_line(cli("runs", "cancel", automation_id, by_status["completed"], expect=1))
    assert "already completed" in done and f"run {by_status['completed']}" in done

    contact_id = run["contact_id"]
    cli("events", "send", "user.created", "--contact-id", contact_id, "--payload", '{"kind":"now"}')
    wait_runs(rt_stack, api, automation_id, cancelled=1, completed=2, failed=1)


def test_stop_with_and_without_cancelling_runs(
    cli: Cli, api: httpx.Client, rt_stack: Stack, tmp_path: Path
) -> None:
    automation_id = applied(
        cli("apply", str(write_yaml(tmp_path / "a.yaml", status="enabled"))), "created"
    )
    wait = ("events", "send", "user.created", "--payload", '{"kind": "wait"}', "--email")
    cli(*wait, unique_email())
    wait_runs(rt_stack, api, automation_id, running=1)

    stopped = cli("stop", automation_id).stdout
    assert stopped == f"stopped {automation_id} (disabled; runs in flight go on)\n"
    assert api.get(f"/automations/{automation_id}").json()["status"] == "disabled"
    cli(*wait, unique_email())  # a disabled automation starts no run
    assert [run["status"] for run in runs(api, automation_id)] == ["running"]

    enabled = api.patch(f"/automations/{automation_id}", json={"status": "enabled"})
    assert enabled.status_code == 200
    cli(*wait, unique_email())
    wait_runs(rt_stack, api, automation_id, running=2)
    answer = json.loads(cli("stop", automation_id, "--cancel-runs", "--json").stdout)
    assert answer == {
        "object": "automation",
        "id": automation_id,
        "status": "disabled",
        "runs_cancelling": False,
    }
    wait_runs(rt_stack, api, automation_id, cancelled=2)


def test_options_on_the_command_line(cli: Cli, api: httpx.Client, api_server: ApiServer) -> None:
    automation_id = create(api)
    closed = f"http://127.0.0.1:{free_port()}"
    options = ("--api-url", api_server.base_url, "--api-key", API_KEY)
    # The flags win over the environment, which here points nowhere and holds no key.
    listed = cli("runs", "list", automation_id, "--json", *options, key=None, url=closed)
    assert json.loads(listed.stdout) == {"object": "list", "has_more": False, "data": []}


# -- bad input ---------------------------------------------------------------------------------


def test_unknown_automation_is_named(cli: Cli) -> None:
    unknown = str(uuid.uuid4())
    for args in (
        ("runs", "list", unknown),
        ("stop", unknown),
        ("stop", unknown, "--cancel-runs"),
        ("runs", "get", unknown, str(uuid.uuid4())),
    ):
        line = error_line(cli(*args, expect=1))
        assert unknown in line and "not found (not_found, HTTP 404)" in line


def test_malformed_uuid(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    line = error_line(cli("runs", "list", "not-a-uuid", expect=1))
    assert line == (
        "error: automation not-a-uuid: The `automation_id` must be a valid UUID. "
        "(invalid_parameter, HTTP 422)"
    )
    line = error_line(cli("runs", "cancel", create(api), "nope", expect=1))
    assert "The `run_id` must be a valid UUID." in line
    file = tmp_path / "a.json"
    file.write_text(json.dumps({"id": "not-a-uuid", "name": "x"}))
    assert "must be a valid UUID" in error_line(cli("apply", str(file), expect=1))
    # A path-like id stays one quoted segment: it reaches no other route.
    file.write_text(json.dumps({"id": "../keys", "name": "x"}))
    assert "(not_found, HTTP 404)" in error_line(cli("apply", str(file), expect=1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{oops", "--payload is not valid JSON: Expecting property name"),
        ("", "--payload is not valid JSON"),
        ("[1, 2]", "--payload must be a JSON object"),
        ('{"score": NaN}', "--payload holds a value JSON cannot carry"),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "--payload is nested too deeply"),
    ],
)
def test_bad_payload_is_refused_locally(cli: Cli, payload: str, message: str) -> None:
    args = ("events", "send", "user.created", "--email", "a@example.test", "--payload", payload)
    assert message in error_line(cli(*args, expect=2))


def test_event_needs_exactly_one_contact(cli: Cli) -> None:
    for who in ((), ("--email", "a@example.test", "--contact-id", str(uuid.uuid4()))):
        line = error_line(cli("events", "send", "user.created", *who, expect=2))
        assert "exactly one of --email and --contact-id" in line


@pytest.mark.parametrize(
    ("email", "rule"),
    [
        ("a@example.test, attacker@evil.test", "not a list"),
        ("@example.test", "needs a name before the @"),
        ("a b@example.test", "must not contain spaces"),
    ],
)
def test_one_address_per_contact_is_checked_locally(cli: Cli, email: str, rule: str) -> None:
    line = error_line(cli("events", "send", "user.created", "--email", email, expect=2))
    assert line.startswith("error: --email ") and rule in line


def test_a_payload_over_the_limits_is_refused_by_the_api(cli: Cli) -> None:
    deep = json.dumps({"a": json.loads("[" * 40 + "]" * 40)})
    args = ("events", "send", "user.created", "--email", "a@example.test", "--payload", deep)
    line = error_line(cli(*args, expect=1))
    assert "more than 32 levels deep" in line and "HTTP 422" in line


def test_bad_files_for_apply(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "folder.yaml").mkdir()
    cases = {
        "missing.yaml": (None, "cannot read missing.yaml: No such file or directory"),
        "folder.yaml": (None, "cannot read folder.yaml: Is a directory"),
        "bad.yaml": ("name: x\nsteps: [unclosed\n", "bad.yaml is not valid YAML"),
        "tabs.yml": ("name: x\n\tsteps: []\n", "tabs.yml is not valid YAML"),
        "bad.json": ('{"name": "x",}', "bad.json is not valid JSON"),
        "list.yaml": ("- name: x\n", "list.yaml must hold a mapping"),
        "typo.yaml": ("name: x\nstep: []\n", "unknown field 'step'"),
        "nameless.json": ('{"steps": []}', "nameless.json needs a `name`"),
        "notes.txt": ("name: x\n", "notes.txt: use a .json, .yaml or .yml file"),
        "binary.yaml": (b"\xff\xfe\x00", "cannot read binary.yaml"),
        # Deeper than Python's parsers recurse: the file's fault, not a RecursionError.
        "deep.json": ('{"steps": ' + "[" * 5000 + "]" * 5000 + "}", "deep.json is nested too"),
        "deep.yaml": ("name: x\nsteps: " + "[" * 900 + "]" * 900, "deep.yaml is nested too"),
    }
    for name, (content, message) in cases.items():
        if isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        elif content is not None:
            (tmp_path / name).write_text(content)
        line = error_line(cli("apply", name, expect=2))
        assert message in line, (name, line)


def test_invalid_graph_is_refused_by_the_api(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text(
        "name: broken\n"
        "steps:\n"
        "  - {key: start, type: trigger, config: {event_name: user.created}}\n"
        "  - {key: hello, type: contact_update, config: {first_name: Hi}}\n"
        "connections:\n"
        "  - {from: start, to: nowhere}\n"
    )
    line = error_line(cli("apply", str(file), expect=1))
    assert "nowhere" in line and "HTTP 422" in line
    assert api.get("/automations").json()["data"] == []


def test_unreachable_server(cli: Cli, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    expected = f"error: cannot reach the API at {closed}: connection refused"
    file = write_yaml(tmp_path / "a.yaml")
    for args in (
        ("list",),
        ("runs", "get", str(uuid.uuid4()), str(uuid.uuid4()), "--json"),
        ("events", "send", "user.created", "--email", "a@example.test"),
        ("apply", str(file)),
    ):
        assert error_line(cli(*args, url=closed, expect=3)) == expected
        assert error_line(cli(*args, "--api-url", closed, expect=3)) == expected
    assert "is not a usable URL" in error_line(cli("list", url="ftp://example.test", expect=2))


def test_a_password_in_the_api_url_and_a_pasted_key_are_never_repeated(cli: Cli) -> None:
    """A proxy's password in --api-url was printed with every failure (or quoted by httpx as
    its "port"); a key with a stray non-ASCII character ended in a traceback."""
    port = free_port()
    line = error_line(cli("list", url=f"http://ops:hunter2@127.0.0.1:{port}", expect=3))
    assert (
        line
        == f"error: cannot reach the API at http://ops:***@127.0.0.1:{port}: connection refused"
    )
    line = error_line(cli("list", url=f"http://ops:hun/ter2@127.0.0.1:{port}", expect=2))
    assert "is not a usable URL" in line and "hun" not in line and "ter2" not in line
    line = error_line(cli("list", key=API_KEY + "\u00e9", expect=2))
    assert "not printable ASCII" in line and API_KEY not in line


def test_another_server_at_the_url_is_not_the_api_refusing(cli: Cli, tmp_path: Path) -> None:
    """A web server's own 404 page is not the API saying no (exit 1): exit 3, and a hint."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{other.server_address[1]}"
        line = error_line(cli("list", url=url, expect=3))
        other.shutdown()
    assert line == (
        f"error: the server at {url} answered HTTP 404 without the API's JSON; "
        "is --api-url the automations API?"
    )


def test_the_key_dev_or_demo_wrote_is_used_without_one(
    cli: Cli, api: httpx.Client, tmp_path: Path
) -> None:
    automation_id = create(api)
    dev_key, demo_key = tmp_path / "data" / "api-key", tmp_path / "data" / "demo" / "api-key"
    demo_key.parent.mkdir(parents=True)
    dev_key.write_text(API_KEY + "\n")
    assert automation_id in cli("list", key=None).stdout

    # Both embedded servers wrote one: the one this API refuses is passed over for the other.
    dev_key.write_text("re_dev_of_another_server")
    demo_key.write_text(API_KEY)
    assert automation_id in cli("list", key=None).stdout
    assert cli("events", "send", "user.created", "--email", "a@example.test", key=None)
    assert len(runs(api, automation_id)) == 1, "the event was sent once"

    demo_key.write_text("re_demo_of_another_server")
    line = error_line(cli("list", key=None, expect=1))
    assert "(invalid_api_key, HTTP 401)" in line
    assert "tried the keys in data/api-key and data/demo/api-key: pass --api-key" in line
    # A key given on the command line or in the environment wins over the files.
    assert "(invalid_api_key, HTTP 401)" in error_line(cli("list", key="re_wrong", expect=1))
    assert automation_id in cli("list", "--api-key", API_KEY, key=None).stdout


def test_api_key_missing_or_wrong(cli: Cli) -> None:
    line = error_line(cli("list", key=None, expect=1))
    assert "Missing API key" in line and "(missing_api_key, HTTP 401)" in line
    assert "AUTOMATIONS_API_KEY" in line
    line = error_line(cli("list", key="re_wrong", expect=1))
    assert "(invalid_api_key, HTTP 401)" in line


def test_usage_errors_exit_2(cli: Cli) -> None:
    for args in (
        ("runs", "list"),
        ("list", "--status", "bogus"),
        ("list", "--limit", "0"),
        ("events", "send"),
        ("stop", str(uuid.uuid4()), "--bogus"),
    ):
        done = cli(*args, expect=2)
        assert done.stdout == ""
    line = error_line(cli("list", "--after", str(uuid.uuid4()), "--before", "x", expect=2))
    assert line == "error: give --after or --before, not both"
