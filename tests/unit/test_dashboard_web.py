"""The dashboard's pure parts: signed sessions, CSRF, links, formats, SVG charts, graph layout."""

from __future__ import annotations

import datetime as dt
import uuid
import xml.etree.ElementTree as ET

import pytest

from engine.errors import InvalidInput, NotFound
from engine.graph import validate_graph
from models.ids import new_id
from web import charts, graph_layout, links
from web import session as cookies
from web.formats import elapsed, human_duration, pretty_json, short_id, utc_text
from web.metric_charts import DateRange

SECRET = "unit-test-secret"
NOW = 1_800_000_000.0
XSS = "<script>alert(1)</script>"


def test_session_round_trip_and_expiry() -> None:
    key = uuid.uuid4()
    session = cookies.new_session(NOW, key_id=key, fingerprint="abc")
    value = cookies.encode(session, SECRET)
    assert cookies.decode(value, SECRET, now=NOW + 60) == session
    assert cookies.decode(value, SECRET, now=NOW + cookies.LIFETIME_SECONDS + 1) is None
    anonymous = cookies.decode(cookies.encode(cookies.new_session(NOW), SECRET), SECRET, now=NOW)
    assert anonymous is not None and not anonymous.signed_in


@pytest.mark.parametrize(
    "forge",
    [
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # signature changed
        lambda v: "e30." + v.split(".")[1],  # payload swapped
        lambda v: v.replace(".", ""),
        lambda v: "",
        lambda v: "a.b.c",
        lambda v: "!!!.???",
    ],
)
def test_forged_or_broken_cookies_are_ignored(forge: object) -> None:
    value = cookies.encode(cookies.new_session(NOW, key_id=uuid.uuid4()), SECRET)
    assert callable(forge)
    assert cookies.decode(forge(value), SECRET, now=NOW) is None


def test_another_secret_does_not_verify() -> None:
    value = cookies.encode(cookies.new_session(NOW), SECRET)
    assert cookies.decode(value, "another-secret", now=NOW) is None


def test_csrf_token_check() -> None:
    session = cookies.new_session(NOW)
    assert cookies.csrf_ok(session, session.csrf)
    assert not cookies.csrf_ok(session, None)
    assert not cookies.csrf_ok(session, "")
    assert not cookies.csrf_ok(session, session.csrf + "x")
    assert not cookies.csrf_ok(None, session.csrf)
    assert cookies.new_session(NOW).csrf != session.csrf


def test_redirects_stay_on_the_dashboard() -> None:
    root = "/dashboard"
    assert links.safe_next("/dashboard/automations/x?y=1", root) == "/dashboard/automations/x?y=1"
    for bad in (None, "", "https://evil.test/", "//evil.test/dashboard/", "/dashboardx", "/other"):
        assert links.safe_next(bad, root) == "/dashboard/"
    assert links.safe_next("/dashboard/\\evil", root) == "/dashboard/"


def test_pager_links() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    first = links.pager(
        "/p", [a, b], has_more=True, after=None, before=None, keep=[("status", "failed")]
    )
    assert first.newer is None and first.older == f"/p?status=failed&after={b}"
    middle = links.pager("/p", [a, b], has_more=True, after=uuid.uuid4(), before=None)
    assert middle.newer == f"/p?before={a}" and middle.older == f"/p?after={b}"
    newest = links.pager("/p", [a, b], has_more=False, after=None, before=uuid.uuid4())
    assert newest.newer is None and newest.older == f"/p?after={b}"
    assert links.pager("/p", [], has_more=False, after=None, before=None) == links.Pager(None, None)


def test_ids_in_links() -> None:
    key = uuid.uuid4()
    assert links.parse_uuid(str(key)) == key
    with pytest.raises(NotFound):
        links.parse_uuid("nope")
    assert links.page_cursor(None, "") == (None, None)
    assert links.page_cursor(str(key), None) == (key, None)
    with pytest.raises(NotFound):
        links.page_cursor(None, "nope")
    with pytest.raises(InvalidInput):
        links.page_cursor(str(key), str(key))


def test_formats() -> None:
    assert human_duration(None) == "—"
    assert human_duration(0.25) == "250 ms"
    assert human_duration(4.25) == "4.2 s"
    assert human_duration(184) == "3 min 4 s"
    assert human_duration(7500) == "2 h 5 min"
    assert human_duration(3 * 86400 + 4 * 3600) == "3 d 4 h"
    start = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
    assert elapsed(start, start + dt.timedelta(seconds=5)) == 5
    assert elapsed(start, None, start + dt.timedelta(minutes=1)) == 60
    assert elapsed(None, start) is None
    assert utc_text(start.replace(tzinfo=None)) == "2026-10-01 12:00:00"
    assert pretty_json({"b": 1, "a": "<x>"}) == '{\n  "a": "<x>",\n  "b": 1\n}'


def test_date_range() -> None:
    now = dt.datetime(2026, 10, 8, 15, 30, tzinfo=dt.UTC)
    default = DateRange.parse(None, None, None, None, now=now)
    assert (default.preset, default.granularity) == ("24h", "hour")
    assert default.window(now) == ("2026-10-07T16:00:00+00:00", "2026-10-08T16:00:00+00:00")
    week = DateRange.parse("7d", None, None, None, now=now)
    assert (week.start, week.end, week.granularity) == ("2026-10-02", "2026-10-08", "day")
    assert week.window(now) == ("2026-10-02T00:00:00+00:00", "2026-10-09T00:00:00+00:00")
    typed = DateRange.parse("7d", "2026-09-01", None, "hour", now=now)
    assert (typed.preset, typed.end, typed.granularity) == (None, "2026-10-08", "hour")
    assert DateRange.parse("bogus", None, None, None, now=now).preset == "24h"
    with pytest.raises(InvalidInput, match="2026-10-01"):
        DateRange.parse(None, "2026-02-30", None, None, now=now).window(now)
    with pytest.raises(InvalidInput, match="on or after"):
        DateRange.parse(None, "2026-10-08", "2026-10-01", None, now=now).window(now)
    with pytest.raises(InvalidInput, match="before 9999-12-31"):  # the calendar's last day
        DateRange.parse(None, "9999-12-01", "9999-12-31", None, now=now).window(now)


def parse_svg(svg: str) -> ET.Element:
    """The SVG as XML: it must be well-formed, whatever text went into it."""
    return ET.fromstring(svg)


def test_nice_ticks() -> None:
    assert charts.nice_ticks(0) == [0.0, 1.0]
    assert charts.nice_ticks(3) == [0, 1, 2, 3]
    assert charts.nice_ticks(97) == [0, 50, 100]
    assert charts.nice_ticks(1234)[-1] >= 1234
    assert charts.nice_ticks(0.3, integer=False)[-1] >= 0.3


def test_stacked_columns_escape_and_draw() -> None:
    series = [
        charts.Series(XSS, "s-failed", [1, 0, 3]),
        charts.Series("ok", "s-completed", [2, 2, 0]),
    ]
    svg = charts.stacked_columns(["a", "<b>", "c"], series, title=f"t {XSS}")
    root = parse_svg(svg)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    rects = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("height") != "11"]
    assert len(rects) == 4  # one per non-zero value
    empty = charts.stacked_columns(["a"], [charts.Series("x", "s-x", [0])], title="e")
    assert "Nothing in this range" in empty


def test_bars_and_funnel() -> None:
    bars = [charts.Bar("p50", 2.0, "s-completed", "2.0 s"), charts.Bar(XSS, 4.0, "s-failed", XSS)]
    svg = charts.horizontal_bars(bars, title="d")
    parse_svg(svg)
    assert "<script>" not in svg
    assert "No data" in charts.horizontal_bars([], title="d")
    steps = [
        charts.FunnelStep("start", "trigger", 10, 10, 0, 0),
        charts.FunnelStep(XSS, "delay", 6, 3, 1, 2),
    ]
    funnel = charts.funnel(steps, title="f")
    parse_svg(funnel)
    assert "6 reached · 3 ok · 1 failed · 2 skipped" in funnel and "<script>" not in funnel


GRAPH = validate_graph(
    [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        {
            "key": "check",
            "type": "condition",
            "config": {"rule": {"field": "event.kind", "operator": "eq", "value": XSS}},
        },
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {
            "key": "wait",
            "type": "wait_for_event",
            "config": {"event_name": "x", "timeout": "1 day"},
        },
        {"key": "end", "type": "contact_delete"},
    ],
    [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "pause", "type": "condition_met"},
        {"from": "check", "to": "wait", "type": "condition_not_met"},
        {"from": "pause", "to": "end"},
        {"from": "wait", "to": "end", "type": "timeout"},
        {"from": "wait", "to": "pause", "type": "event_received"},
    ],
)


def test_layout_by_depth_points_every_arrow_down() -> None:
    depth = graph_layout.depths(GRAPH)
    assert depth == {"start": 0, "check": 1, "wait": 2, "pause": 3, "end": 4}
    drawn = graph_layout.layout(GRAPH)
    boxes = {box.key: box for box in drawn.boxes}
    for arrow in drawn.arrows:
        assert boxes[arrow.to_key].y > boxes[arrow.from_key].y
    labels = sorted(arrow.label for arrow in drawn.arrows)
    assert labels == ["", "", "condition met", "event received", "not met", "timeout"]


def test_graph_svg_escapes_and_annotates() -> None:
    counts = {"check": graph_layout.Counts(5, 3, 2, 0)}
    svg = graph_layout.render(GRAPH, counts, title=f"Steps of {XSS}")
    parse_svg(svg)
    assert "<script>" not in svg
    assert "5 reached" in svg and "3 ok · 2 failed · 0 skipped" in svg and "has-failed" in svg
    assert svg.count('class="edge-label"') == 4


def test_runs_made_together_show_different_short_ids() -> None:
    # A version 7 id's first digits are its time: the same for ids made within a minute.
    made = [new_id() for _ in range(100)]
    assert len({short_id(one) for one in made}) == len(made)
    assert short_id(made[0]) == str(made[0])[-8:]
