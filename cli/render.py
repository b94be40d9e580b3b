"""Human views of the API's answers: short timestamps, humanised durations, coloured statuses."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

NONE = "-"
STATUS_STYLES = {
    "still waiting": "yellow",
    "enabled": "green",
    "disabled": "dim",
    "completed": "green",
    "running": "cyan",
    "waiting": "yellow",
    "pending": "yellow",
    "failed": "bold red",
    "cancelled": "magenta",
    "skipped": "dim",
}


def parse_time(text: str | None) -> dt.datetime | None:
    """The API's `2026-10-01 12:00:00.000000+00` as an aware datetime; None if absent or odd."""
    if not text:
        return None
    value = text.strip()
    if value.endswith(("+00", "-00")):
        value += ":00"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def short_time(text: str | None) -> str:
    """To the second, in UTC: `2026-10-01 12:00:00`; unparseable text is shown as it came."""
    parsed = parse_time(text)
    if parsed is None:
        return text or NONE
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def human_duration(seconds: float) -> str:
    """`350 ms`, `4.2 s`, `42 s`, `3 m 5 s`, `2 h 10 m`, `3 d 4 h`."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for index, (name, size) in enumerate(units[:-1]):
        if whole >= size:
            smaller_name, smaller_size = units[index + 1]
            return f"{whole // size} {name} {(whole % size) // smaller_size} {smaller_name}"
    raise AssertionError("unreachable")  # pragma: no cover


def span(start: str | None, end: str | None, *, now: dt.datetime | None = None) -> str:
    """How long from `start` to `end`; without an end, the time so far."""
    began = parse_time(start)
    if began is None:
        return NONE
    ended = parse_time(end)
    if ended is not None:
        return human_duration((ended - began).total_seconds())
    current = now or dt.datetime.now(dt.UTC)
    return human_duration((current - began).total_seconds()) + " so far"


def status_text(status: Any) -> Text:
    text = str(status) if status is not None else NONE
    return Text(text, style=STATUS_STYLES.get(text, ""))


def _table(*columns: str) -> Table:
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in columns:
        if column == "id":
            table.add_column(column, no_wrap=True, min_width=36)
        else:
            table.add_column(column, overflow="fold")
    return table


def automations_table(items: Sequence[Mapping[str, Any]]) -> Table:
    table = _table("id", "name", "status", "created (UTC)", "updated (UTC)")
    for item in items:
        table.add_row(
            str(item.get("id")),
            str(item.get("name")),
            status_text(item.get("status")),
            short_time(item.get("created_at")),
            short_time(item.get("updated_at")),
        )
    return table


def runs_table(items: Sequence[Mapping[str, Any]]) -> Table:
    table = _table("id", "status", "created (UTC)", "started (UTC)", "duration")
    for item in items:
        table.add_row(
            str(item.get("id")),
            status_text(item.get("status")),
            short_time(item.get("created_at")),
            short_time(item.get("started_at")),
            span(item.get("started_at"), item.get("completed_at")),
        )
    return table


def _error_message(error: Any) -> str:
    if isinstance(error, Mapping):
        return str(error.get("message") or error.get("code") or "")
    return "" if error is None else str(error)


def run_view(run: Mapping[str, Any]) -> RenderableType:
    """The run's summary, then its steps: key, type, status, started, duration, error."""
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    raw_event = run.get("event")
    event: Mapping[str, Any] = raw_event if isinstance(raw_event, Mapping) else {}
    for label, value in (
        ("run", str(run.get("id"))),
        ("status", status_text(run.get("status"))),
        ("automation", str(run.get("automation_id") or NONE)),
        ("contact", str(run.get("contact_id") or NONE)),
        ("event", str(event.get("name") or NONE)),
        ("created (UTC)", short_time(run.get("created_at"))),
        ("started (UTC)", short_time(run.get("started_at"))),
        ("duration", span(run.get("started_at"), run.get("completed_at"))),
    ):
        summary.add_row(label, value)
    steps = _table("key", "type", "status", "started (UTC)", "duration", "error")
    for step in run.get("steps") or []:
        steps.add_row(
            str(step.get("key")),
            str(step.get("type")),
            status_text(step.get("status")),
            short_time(step.get("started_at")),
            span(step.get("started_at"), step.get("completed_at")),
            Text(_error_message(step.get("error")), style="red"),
        )
    return Group(summary, Text(""), steps)


def more_hint(page: Mapping[str, Any], *, backwards: bool = False) -> Text | None:
    """A pointer to the next page (older, or newer when paging with `--before`), if any."""
    data = page.get("data") or []
    if not page.get("has_more") or not data:
        return None
    flag, edge = ("--before", data[0]) if backwards else ("--after", data[-1])
    return Text(f"more: repeat with {flag} {edge.get('id')}", style="dim")


_OFFSET_UNITS = {"day": 86400, "hour": 3600, "minute": 60, "second": 1}
_OFFSET_PART = re.compile(r"(\d+) (day|hour|minute|second)s?")


def offset_seconds(text: str | None) -> int:
    """Seconds in the API's humanised offset, `+3 days 2 hours` (0 if it cannot be read)."""
    return sum(
        int(amount) * _OFFSET_UNITS[unit] for amount, unit in _OFFSET_PART.findall(text or "")
    )


def _step_detail(step: Mapping[str, Any], emails: Mapping[str, Mapping[str, Any]]) -> Text:
    error = step.get("error")
    if error:
        return Text(f"{_error_message(error)} ({error.get('code')})", style="red")
    email = emails.get(str(step.get("key")))
    if email is not None:
        return Text(f"“{email.get('subject')}” to {email.get('to')}")
    raw = step.get("output")
    output: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    reason = (
        step.get("skip_reason")
        or output.get("branch")
        or ("timed out" if output.get("timed_out") else None)
    )
    return Text(str(reason).replace("_", " ") if reason else "", style="dim")


def simulation_view(answer: Mapping[str, Any]) -> RenderableType:
    """The simulated run as a timeline: each step and later event at its offset from the start,
    with each email's subject and each error."""
    status = str(answer.get("status"))
    head = Text("simulated run ", style="bold")
    head.append_text(status_text("still waiting" if status == "waiting" else status))
    head.append(f" after {answer.get('duration')}")
    emails = {str(e.get("step_key")): e for e in answer.get("emails") or []}
    rows: list[tuple[int, int, tuple[RenderableType, ...]]] = []
    for order, event in enumerate(answer.get("events") or []):
        resumed = event.get("resumed_step")
        detail = f"resumed {resumed}" if resumed else "no wait resumed"
        cells: tuple[RenderableType, ...] = (
            str(event.get("at")),
            f"← {event.get('name')}",
            "event",
            "",
            Text(detail, "dim"),
        )
        rows.append((offset_seconds(event.get("at")), order, cells))
    for order, step in enumerate(answer.get("steps") or [], start=len(rows)):
        cells = (
            str(step.get("at")),
            str(step.get("key")),
            str(step.get("type")),
            status_text(step.get("status")),
            _step_detail(step, emails),
        )
        rows.append((offset_seconds(step.get("at")), order, cells))
    table = _table("at", "step", "type", "status", "detail")
    for _, _, cells in sorted(rows, key=lambda row: (row[0], row[1])):
        table.add_row(*cells)
    return Group(head, table)
