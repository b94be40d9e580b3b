"""`automations demo`: a welcome series on the embedded runtime, watched live until it ends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from engine.db import transaction
from engine.lifecycle import create_automation
from engine.settings import Settings
from engine.store import contacts as contact_store
from engine.store import content as content_store
from engine.store import segments as segment_store
from models.enums import DomainStatus, TemplateStatus

out = Console()
TERMINAL = {"completed", "failed", "cancelled", "skipped"}

CONTACTS = [
    # email, first name, plan, unsubscribed, sends plan.upgraded
    ("ann@example.com", "Ann", "pro", False, False),
    ("bob@example.com", "Bob", "free", False, True),
    ("cid@example.com", "Cid", "free", False, False),
    ("dee@example.com", "Dee", "free", True, False),
    ("eve@example.com", "Eve", "pro", False, False),
]
EXPECTED = {"ann": "completed", "bob": "completed", "cid": "completed", "dee": "skipped"}


def _email_step(key: str, template_id: str) -> dict[str, Any]:
    variables = {"FIRST_NAME": {"var": "contact.first_name"}, "PLAN": {"var": "event.plan"}}
    return {
        "key": key,
        "type": "send_email",
        "config": {"template": {"id": template_id, "variables": variables}},
    }


def welcome_series(welcome_id: str, nudge_id: str, segment_id: str) -> dict[str, Any]:
    """The sample graph: every step type but contact_delete, and both kinds of branch."""
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        _email_step("welcome", welcome_id),
        {"key": "wait_1_day", "type": "delay", "config": {"duration": "1 day"}},
        {
            "key": "is_pro",
            "type": "condition",
            "config": {"rule": {"field": "event.plan", "operator": "eq", "value": "pro"}},
        },
        {"key": "tag_pro", "type": "add_to_segment", "config": {"segment_id": segment_id}},
        {
            "key": "await_upgrade",
            "type": "wait_for_event",
            "config": {"event_name": "plan.upgraded", "timeout": "2 days"},
        },
        {
            "key": "mark_upgraded",
            "type": "contact_update",
            "config": {"properties": {"upgraded": True}},
        },
        _email_step("nudge", nudge_id),
    ]
    connections = [
        {"from": "start", "to": "welcome"},
        {"from": "welcome", "to": "wait_1_day"},
        {"from": "wait_1_day", "to": "is_pro"},
        {"from": "is_pro", "to": "tag_pro", "type": "condition_met"},
        {"from": "is_pro", "to": "await_upgrade", "type": "condition_not_met"},
        {"from": "await_upgrade", "to": "mark_upgraded", "type": "event_received"},
        {"from": "await_upgrade", "to": "nudge", "type": "timeout"},
    ]
    return {"steps": steps, "connections": connections}


def load_catalogue(session: Any, now: Any) -> tuple[str, str, str]:
    """The verified domain example.com, the `welcome` and `nudge` templates and a segment;
    (welcome id, nudge id, segment id). examples/welcome-series.yaml uses them too."""
    content_store.create_domain(session, name="example.com", now=now, status=DomainStatus.VERIFIED)
    common = {
        "sender": "Acme <hello@example.com>",
        "status": TemplateStatus.PUBLISHED,
        "now": now,
    }
    fallbacks = [
        {"key": "FIRST_NAME", "type": "string", "fallback_value": "there"},
        {"key": "PLAN", "type": "string", "fallback_value": "free"},
    ]
    welcome = content_store.create_template(
        session,
        name="Welcome",
        alias="welcome",
        subject="Welcome, {{{FIRST_NAME}}}!",
        html="<p>Hi {{{FIRST_NAME}}}, you are on the {{{PLAN}}} plan.</p>"
        '<p><a href="{{{RESEND_UNSUBSCRIBE_URL}}}">Unsubscribe</a></p>',
        variables=fallbacks,
        **common,
    )
    nudge = content_store.create_template(
        session,
        name="Nudge",
        alias="nudge",
        subject="{{{FIRST_NAME}}}, ready to upgrade?",
        html="<p>Pro is waiting for you, {{{FIRST_NAME}}}.</p>",
        variables=fallbacks,
        **common,
    )
    segment = segment_store.create_segment(session, name="Pro users", now=now)
    return str(welcome.id), str(nudge.id), str(segment.id)


def load_sample(server: Any) -> str:
    """Domain, templates, segment, contacts and the automation; the automation's id."""
    rt = server.runtime
    now = rt.clock.now()
    with transaction(rt.sessions) as session:
        welcome_id, nudge_id, segment_id = load_catalogue(session, now)
        for email, first_name, _, unsubscribed, _ in CONTACTS:
            contact_store.create_contact(
                session, email=email, first_name=first_name, unsubscribed=unsubscribed, now=now
            )
        automation = create_automation(
            session,
            name="Welcome series",
            status="enabled",
            now=now,
            **welcome_series(welcome_id, nudge_id, segment_id),
        )
        return str(automation.id)


def _table(runs: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Runs of 'Welcome series'")
    for column in ("contact", "status", "current step", "steps done"):
        table.add_column(column)
    for email, run in runs.items():
        steps = run.get("steps", [])
        active = [s["key"] for s in steps if s["status"] in ("pending", "running", "waiting")]
        done = sum(s["status"] in ("completed", "skipped", "failed") for s in steps)
        colour = {"completed": "green", "failed": "red", "skipped": "yellow"}.get(
            run["status"], "cyan"
        )
        table.add_row(email, f"[{colour}]{run['status']}[/]", ", ".join(active) or "-", str(done))
    return table


def watch(
    client: httpx.Client, automation_id: str, run_ids: dict[str, str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll the API until every run ended, showing a live table; the last state."""
    upgraded = False
    deadline = time.monotonic() + timeout
    runs: dict[str, dict[str, Any]] = {}
    with Live(_table(runs), console=out, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            runs = {
                email: _get(client, f"/automations/{automation_id}/runs/{run_id}")
                for email, run_id in run_ids.items()
            }
            live.update(_table(runs))
            bob = runs.get("bob@example.com", {})
            waiting = any(
                s["key"] == "await_upgrade" and s["status"] == "waiting"
                for s in bob.get("steps", [])
            )
            if waiting and not upgraded:
                client.post(
                    "/events/send", json={"event": "plan.upgraded", "email": "bob@example.com"}
                )
                upgraded = True
            if runs and all(run["status"] in TERMINAL for run in runs.values()):
                break
            time.sleep(0.25)
    return runs


def run_demo(
    *, host: str, port: int, data_dir: Path, day_seconds: float, exit_when_done: bool
) -> None:
    """Load a sample welcome series, send events, and watch the runs advance live."""
    from cli.embedded import checked_settings, owning, serving, wait_for_stop_signal

    time_scale = day_seconds / 86400
    checked_settings(data_dir, time_scale=time_scale)  # refused before anything is written
    # The data dir is wiped only once this process holds it (never under a running dev or demo).
    with owning(data_dir), serving(_fresh(data_dir, time_scale), host=host, port=port) as server:
        settings = server.settings
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        automation_id = load_sample(server)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            for email, _, plan, _, _ in CONTACTS:
                event = {"event": "user.created", "email": email, "payload": {"plan": plan}}
                client.post("/events/send", json=event).raise_for_status()
            listed = client.get(f"/automations/{automation_id}/runs").json()["data"]
            run_ids = _by_email(client, automation_id, [run["id"] for run in listed])
            runs = watch(client, automation_id, run_ids, timeout=30 + day_seconds * 10)
        ok = _summary(runs, server.url, data_dir, key)
        if exit_when_done:
            raise typer.Exit(0 if ok else 1)
        out.print("\nServing until Ctrl-C.")
        wait_for_stop_signal()


def _fresh(data_dir: Path, time_scale: float) -> Settings:
    """The demo's settings, on a data dir emptied of any earlier demo."""
    from cli.embedded import embedded_settings, wipe

    wipe(data_dir)
    return embedded_settings(data_dir, time_scale=time_scale)


def _get(client: httpx.Client, path: str) -> dict[str, Any]:
    answer = client.get(path)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def _by_email(client: httpx.Client, automation_id: str, run_ids: list[str]) -> dict[str, str]:
    """Map contact emails to run ids through each run's contact."""
    mapping = {}
    for run_id in run_ids:
        detail = _get(client, f"/automations/{automation_id}/runs/{run_id}")
        contact = _get(client, f"/contacts/{detail['contact_id']}") if detail["contact_id"] else {}
        mapping[contact.get("email", run_id)] = run_id
    return dict(sorted(mapping.items()))


def _summary(runs: dict[str, dict[str, Any]], url: str, data_dir: Path, key: str) -> bool:
    finished = all(run["status"] in TERMINAL for run in runs.values())
    expected = all(
        runs.get(f"{name}@example.com", {}).get("status") == status
        for name, status in EXPECTED.items()
    )
    # One file per send attempt, `<email id>.<attempt>.eml`: a second attempt is a second file.
    files = sorted((data_dir / "outbox").glob("*.eml"))
    emails = {path.name.split(".", 1)[0] for path in files}
    resent = f"; {len(files) - len(emails)} resent" if len(files) > len(emails) else ""
    out.print(
        f"\n{'All runs finished' if finished else 'Runs still going'}: "
        + ", ".join(f"{e.split('@')[0]} {r['status']}" for e, r in runs.items())
    )
    out.print(f"Dashboard: {url}/dashboard  (sign in with the API key {key})")
    out.print(f"API:       {url}  (Authorization: Bearer {key})")
    out.print(
        f"Emails:    {len(emails)} written to {data_dir / 'outbox'} (a file per attempt{resent})"
    )
    return finished and expected
