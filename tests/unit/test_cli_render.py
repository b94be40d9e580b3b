"""The CLI's human renderings: timestamps, durations, and tables that never lose an id."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from rich.console import Console

from cli import render
from cli.http import path

UUID = "0b6f2f0e-4c1e-4f53-9a55-8d3b0b7a2f11"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-1, "0 ms"),
        (0, "0 ms"),
        (0.35, "350 ms"),
        (1, "1.0 s"),
        (4.25, "4.2 s"),
        (42.9, "42 s"),
        (60, "1 m 0 s"),
        (185, "3 m 5 s"),
        (3600, "1 h 0 m"),
        (2 * 3600 + 10 * 60 + 59, "2 h 10 m"),
        (3 * 86400 + 4 * 3600 + 1, "3 d 4 h"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert render.human_duration(seconds) == expected


def test_wire_timestamps_are_shortened_to_the_second() -> None:
    assert render.short_time("2026-10-01 12:00:05.123456+00") == "2026-10-01 12:00:05"
    assert render.short_time("2026-10-01T14:00:05+02:00") == "2026-10-01 12:00:05"
    assert render.short_time(None) == "-"
    assert render.short_time("yesterday") == "yesterday"
    parsed = render.parse_time("2026-10-01 12:00:05.000001+00")
    assert parsed == dt.datetime(2026, 10, 1, 12, 0, 5, 1, tzinfo=dt.UTC)


def test_span_between_two_wire_timestamps_or_so_far() -> None:
    start = "2026-10-01 12:00:00.000000+00"
    assert render.span(start, "2026-10-01 12:00:00.250000+00") == "250 ms"
    assert render.span(start, "2026-10-01 12:03:05.000000+00") == "3 m 5 s"
    now = dt.datetime(2026, 10, 1, 13, 0, 0, tzinfo=dt.UTC)
    assert render.span(start, None, now=now) == "1 h 0 m so far"
    assert render.span(None, None) == "-"


def printed(renderable: object, width: int = 60) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def test_narrow_tables_keep_ids_whole() -> None:
    item = {
        "id": UUID,
        "status": "failed",
        "created_at": "2026-10-01 12:00:00.000000+00",
        "started_at": "2026-10-01 12:00:00.000000+00",
        "completed_at": "2026-10-01 12:00:01.500000+00",
    }
    assert UUID in printed(render.runs_table([item]), width=50)
    wide = printed(render.runs_table([item]), width=120)
    assert "failed" in wide and "2026-10-01 12:00:00" in wide and "1.5 s" in wide


def test_run_view_shows_steps_and_their_errors() -> None:
    run = {
        "id": UUID,
        "status": "failed",
        "automation_id": UUID,
        "event": {"name": "user.created", "payload": {"secret": "not shown"}},
        "steps": [
            {"key": "start", "type": "trigger", "status": "completed", "error": None},
            {
                "key": "check",
                "type": "condition",
                "status": "failed",
                "error": {"message": "missing event.kind", "code": "missing_field"},
            },
        ],
    }
    text = printed(render.run_view(run), width=120)
    assert "user.created" in text and "missing event.kind" in text
    assert "not shown" not in text


def test_more_hint_points_at_the_next_page() -> None:
    page = {"has_more": True, "data": [{"id": "a"}, {"id": "b"}]}
    assert str(render.more_hint(page)) == "more: repeat with --after b"
    assert str(render.more_hint(page, backwards=True)) == "more: repeat with --before a"
    assert render.more_hint({"has_more": False, "data": [{"id": "a"}]}) is None


def test_path_segments_are_quoted() -> None:
    assert path("automations", "../keys", "runs") == "/automations/..%2Fkeys/runs"
