"""The Metrics tab's date range and its charts, drawn from the engine's metrics."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from engine.dashboard import MetricsView
from engine.errors import InvalidInput
from engine.metrics import Bucket
from web import charts
from web.formats import human_duration
from web.graph_layout import step_label
from web.render import trusted_svg

STARTED = ("running", "completed", "failed", "cancelled", "skipped")
FINISHED = ("completed", "failed", "cancelled", "skipped")
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
# Ready-made ranges: the last 24 hours by the hour, or the last N whole UTC days by the day.
PRESETS = {"24h": ("Last 24 hours", 0), "7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30)}
PRESETS["90d"] = ("Last 90 days", 90)
DEFAULT = "24h"


@dataclass(frozen=True)
class DateRange:
    """A preset range, or whole UTC days from `start` to `end` (both included) from the form."""

    preset: str | None
    start: str
    end: str
    granularity: str

    @classmethod
    def parse(
        cls,
        preset: str | None,
        start: str | None,
        end: str | None,
        granularity: str | None,
        *,
        now: dt.datetime,
    ) -> DateRange:
        """Typed dates win; otherwise a preset, by default the last 24 hours by the hour."""
        today = now.date()
        if start or end:
            first = (start or (today - 6 * DAY).isoformat()).strip()
            return cls(None, first, (end or today.isoformat()).strip(), granularity or "day")
        chosen = preset if preset in PRESETS else DEFAULT
        days = PRESETS[chosen][1]
        if not days:
            first = (now - 23 * HOUR).date().isoformat()
            return cls(chosen, first, today.isoformat(), granularity or "hour")
        first = (today - (days - 1) * DAY).isoformat()
        return cls(chosen, first, today.isoformat(), granularity or "day")

    @property
    def label(self) -> str:
        if self.preset is not None:
            return "the " + PRESETS[self.preset][0].lower()
        return f"from {self.start} to {self.end} (whole UTC days)"

    def window(self, now: dt.datetime) -> tuple[str, str]:
        """ISO timestamps for the engine: [start, end) of the range."""
        if self.preset is not None and not PRESETS[self.preset][1]:
            top = now.replace(minute=0, second=0, microsecond=0) + HOUR
            return (top - 24 * HOUR).isoformat(), top.isoformat()
        try:
            first, last = dt.date.fromisoformat(self.start), dt.date.fromisoformat(self.end)
        except ValueError:
            raise InvalidInput("Dates must be written like 2026-10-01.", field="start") from None
        if last < first:
            raise InvalidInput("The end date must be on or after the start date.", field="end")
        if last == dt.date.max:  # the range ends the next midnight, past the calendar's end
            raise InvalidInput(f"The end date must be before {last.isoformat()}.", field="end")
        return f"{first.isoformat()}T00:00:00+00:00", f"{(last + DAY).isoformat()}T00:00:00+00:00"


def _labels(buckets: list[Bucket], granularity: str) -> list[str]:
    if granularity == "day":
        return [bucket.start.strftime("%b %d") for bucket in buckets]
    days = {bucket.start.date() for bucket in buckets}
    pattern = "%H:00" if len(days) == 1 else "%m-%d %Hh"
    return [bucket.start.strftime(pattern) for bucket in buckets]


def _columns(buckets: list[Bucket], statuses: tuple[str, ...], granularity: str, title: str) -> str:
    series = [
        charts.Series(
            status, f"s-{status}", [bucket.by_status.get(status, 0) for bucket in buckets]
        )
        for status in statuses
    ]
    return charts.stacked_columns(
        _labels(buckets, granularity), series, title=title, empty_text="No runs in this range"
    )


def charts_for(view: MetricsView) -> dict[str, Any]:
    """Every chart of the tab as trusted SVG markup (all text inside is escaped)."""
    granularity = str(view.window.granularity)
    per = "hour" if granularity == "hour" else "day"
    durations = [
        charts.Bar(name, seconds, "s-completed", human_duration(seconds))
        for name, seconds in view.percentiles.items()
        if seconds is not None
    ]
    skipped = view.emails_skipped_unsubscribed
    emails = [
        charts.Bar("sent", view.emails_sent, "s-completed", f"{view.emails_sent:,}"),
        charts.Bar("skipped (unsubscribed)", skipped, "s-skipped", f"{skipped:,}"),
    ]
    funnel = [
        charts.FunnelStep(s.key, step_label(s.type), s.reached, s.completed, s.failed, s.skipped)
        for s in view.steps
    ]
    svg = {
        "started": _columns(view.started, STARTED, granularity, f"Runs started per {per}"),
        "finished": _columns(view.finished, FINISHED, granularity, f"Runs finished per {per}"),
        "durations": charts.horizontal_bars(
            durations, title="Run duration percentiles", empty_text="No finished runs"
        ),
        "funnel": charts.funnel(funnel, title="Runs per step, in graph order"),
        "emails": charts.horizontal_bars(emails, title="Emails sent and skipped"),
    }
    return {
        **{name: trusted_svg(text) for name, text in svg.items()},
        "by_status": view.by_status,
        "total": sum(view.by_status.values()),
        "finished_runs": view.finished_runs,
        "quantiles": view.percentiles,
        "emails_sent": view.emails_sent,
        "recovery": view.recovery,
    }
