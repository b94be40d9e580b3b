"""`automations simulate` as a user (or a CI job) runs it: the installed script over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cli.demo import load_catalogue
from engine.db import transaction
from tests.integration.harness import ApiServer, Stack
from tests.integration.test_cli_client import Cli, error_line

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SERIES = str(EXAMPLES / "welcome-series.yaml")
EXPECT = str(EXAMPLES / "welcome-series.expect.yaml")
ADA = str(EXAMPLES / "ada.yaml")


@pytest.fixture
def cli(api: httpx.Client, api_server: ApiServer, tmp_path: Path) -> Cli:
    """The script against a live API over an empty database."""
    return Cli(api_server.base_url, tmp_path)


@pytest.fixture
def catalogue(rt_stack: Stack) -> Stack:
    """The demo's domain and templates, which the example automation uses."""
    with transaction(rt_stack.runtime.sessions) as session:
        load_catalogue(session, rt_stack.clock.now())
    return rt_stack


def test_the_examples_meet_their_expectations(cli: Cli, catalogue: Stack) -> None:
    done = cli("simulate", SERIES, "--expect", EXPECT)
    lines = done.stdout.splitlines()
    assert lines[-1] == "all 5 met their expectations"
    assert "✓ free plan, paid within the wait: completed after 2 days" in lines
    assert "✓ unsubscribed: skipped after 4 days" in lines


def test_the_timeline_shows_each_step_event_and_subject(cli: Cli, catalogue: Stack) -> None:
    done = cli(
        "simulate",
        SERIES,
        "--contact",
        ADA,
        "--event",
        "user.created",
        "--payload",
        '{"plan": "free"}',
        "--then",
        "user.paid after 2 days",
    )
    out = done.stdout
    assert out.startswith("simulated run completed after 2 days")
    assert "“Welcome, Ada!” to ada@example.com" in out
    assert "← user.paid" in out and "resumed await_payment" in out
    rows = [line.split()[:4] for line in out.splitlines()[2:]]
    assert ["+1", "day", "is_pro", "condition"] in rows
    assert out.index("← user.paid") < out.index("mark_paid")


def test_json_for_scripts(cli: Cli, catalogue: Stack) -> None:
    done = cli("simulate", SERIES, "--contact", "bo@example.com", "--until", "1 hour", "--json")
    answer = json.loads(done.stdout)
    assert (answer["object"], answer["status"], answer["duration"]) == (
        "simulation",
        "waiting",
        "1 hour",
    )
    checked = json.loads(cli("simulate", SERIES, "--expect", EXPECT, "--json").stdout)
    assert checked["object"] == "simulation_check" and checked["passed"] is True
    assert checked["cases"][0]["name"] == "pro plan"


def test_a_stored_automation_by_id(cli: Cli, catalogue: Stack) -> None:
    automation_id = cli("apply", SERIES).stdout.split()[-1]
    payload = '{"plan": "free"}'
    done = cli("simulate", automation_id, "--contact", "cy@example.com", "--payload", payload)
    assert done.stdout.startswith("simulated run completed after 4 days")


def test_a_run_that_would_fail_exits_4(cli: Cli, rt_stack: Stack) -> None:
    """Without the demo's templates, the welcome email cannot be sent."""
    done = cli("simulate", SERIES, "--contact", "dee@example.com", expect=4)
    assert "simulated run failed after 0 minutes" in done.stdout
    assert "Template `welcome` not found (template_not_found)" in done.stdout


def test_unmet_expectations_exit_4_and_say_which(
    cli: Cli, catalogue: Stack, tmp_path: Path
) -> None:
    expect = tmp_path / "wrong.yaml"
    expect.write_text(
        "status: completed\n"
        "path: [start, welcome, wait_1_day, is_pro, mark_pro]\n"
        "steps: {nudge: completed}\n"
        "emails: [Hello, 'Ada, ready to upgrade?']\n"
    )
    done = cli(
        "simulate",
        SERIES,
        "--contact",
        ADA,
        "--payload",
        '{"plan": "free"}',
        "--expect",
        str(expect),
        expect=4,
    )
    out = done.stdout
    assert "unmet: the path is start → welcome → wait_1_day → is_pro → await_payment → nudge" in out
    assert "unmet: email 1 (welcome) has subject 'Welcome, Ada!', expected 'Hello'" in out
    assert out.splitlines()[-1] == "0 of 1 met their expectations"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere.yaml", "--contact", "a@b.test"], "cannot read nowhere.yaml"),
        (["not-an-id", "--contact", "a@b.test"], "'not-an-id' is neither a file nor"),
        ([SERIES, "--contact", "nobody"], "--contact 'nobody': give a file, an email"),
        ([SERIES, "--contact", "a@b.test", "--payload", "[1]"], "--payload must be a JSON object"),
        ([SERIES, "--contact", "a@b.test", "--then", "user.paid in 2 days"], "--then 'user.paid"),
        ([SERIES, "--contact", "a@b.test", "--then", "x after 2 dayz"], "'2 dayz' is not a"),
        ([SERIES], "give --contact"),
        ([SERIES, "--contact", "a@b.test", "--expect", ADA], "unknown field 'email'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: list[str], message: str) -> None:
    assert message in error_line(cli("simulate", *args, expect=2))


def test_input_nested_too_deeply_is_bad_input(cli: Cli, tmp_path: Path) -> None:
    """Deeper than Python's parsers recurse: one line naming the input, not a RecursionError."""
    deep = "[" * 5000 + "]" * 5000
    (tmp_path / "contact.yaml").write_text(f"email: a@b.test\nproperties: {{a: {deep}}}\n")
    (tmp_path / "expect.yaml").write_text(f"path: {deep}\n")
    cases = {
        "--payload": ["--contact", "a@b.test", "--payload", f'{{"a": {deep}}}'],
        "--then": ["--contact", "a@b.test", "--then", f'user.paid after 1 day {{"a": {deep}}}'],
        "contact.yaml": ["--contact", "contact.yaml"],
        "expect.yaml": ["--contact", "a@b.test", "--expect", "expect.yaml"],
    }
    for what, args in cases.items():
        line = error_line(cli("simulate", SERIES, *args, expect=2))
        assert what in line and "nested too deeply" in line, line


def test_a_long_then_is_named_by_its_ends(cli: Cli) -> None:
    """80 KB of --then (one argument holds at most 128 KB) is refused in a line that shows
    its two ends, not all of it."""
    text = "user.paid after 1 day {" + '"a": 1, ' * 10_000 + '"z": }'
    line = error_line(cli("simulate", SERIES, "--contact", "a@b.test", "--then", text, expect=2))
    assert len(line) < 300, len(line)
    assert line.startswith('error: --then \'user.paid after 1 day {"a": 1,'), line
    assert "'...'" in line and '"z": }\':' in line, line
    assert "the payload is not valid JSON" in line, line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["00000000-0000-4000-8000-000000000000", "--contact", "a@b.test"],
            "`automation_id`: no automation has the id",
        ),
        ([SERIES, "--contact", "a@b.test", "--event", "user.paid"], "`event.name` is `user.paid`"),
        ([SERIES, "--contact", "a@b.test", "--until", "2 years"], "`until`"),
    ],
)
def test_refused_by_the_api_is_one_line_and_exit_1(
    cli: Cli, rt_stack: Stack, args: list[str], message: str
) -> None:
    line = error_line(cli("simulate", *args, expect=1))
    assert message in line and "(validation_error, HTTP 422)" in line


def test_a_later_event_name_the_database_cannot_hold_is_named(
    cli: Cli, rt_stack: Stack, tmp_path: Path
) -> None:
    """A NUL in a name from a file (YAML's "\\0") reaches the API: a 422 naming the field, shown
    in one line, not the server's "cannot be stored" without a field."""
    (tmp_path / "expect.yaml").write_text(
        'cases:\n  - name: nul\n    then: [{name: "user.paid\\0", after: "1 day"}]\n'
        "    expect: {status: completed}\n"
    )
    args = ["--contact", "a@b.test", "--expect", "expect.yaml"]
    line = error_line(cli("simulate", SERIES, *args, expect=1))
    assert "`events[0].name` holds a NUL character" in line, line
    assert "(validation_error, HTTP 422)" in line, line
