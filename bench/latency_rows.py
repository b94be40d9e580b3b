"""bench.latency's table: its figures against the targets and the GET /health baseline, and the
time split by stage (bench/latency_stages.py)."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.latency_stages import STAGES

TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0


def stage_rows(stages: dict[str, Any], span: dict[str, Any]) -> list[report.Row]:
    """p50, p95 and p99 of each stage (bench/latency_stages.py), in order, and how many of its
    values fell below zero, where some did (stamps of two processes' clocks); then of `span`,
    the time they divide (request → step recorded)."""
    rows = []
    for name, figures in stages.items():
        if not figures["count"]:
            continue
        label = f"stage {name}: {STAGES[name]}"
        rows += [report.row(f"{label}, {q}", figures[q], "ms") for q in ("p50", "p95", "p99")]
        if figures.get("negative"):
            rows.append(report.row(f"{label}, values below 0", figures["negative"], "events"))
    if span["count"]:
        label = "event sent → email step recorded (the stages' sum)"
        rows += [report.row(f"{label}, {q}", span[q], "ms") for q in ("p50", "p99")]
    return rows


def rows_of(figures: dict[str, Any], health: dict[str, float]) -> list[report.Row]:
    total, after, http = (
        figures["sent_to_sink_ms"],
        figures["accepted_to_sink_ms"],
        figures["send_round_trip_ms"],
    )
    if not total["count"]:
        return [report.row("emails at the sink", 0, "emails", target="> 0", met=False)]

    def against_health(
        metric: str, ours: dict[str, float], quantile: str, target: float | None = None
    ) -> report.Row:
        return report.row(
            f"{metric}, {quantile}",
            ours[quantile],
            "ms",
            baseline=health[quantile],
            baseline_label=f"GET /health round trip {quantile}",
            target=None if target is None else f"≤ {target:g} ms",
            met=None if target is None else ours[quantile] <= target,
        )

    return [
        against_health("event sent → email at sink", total, "p50", TARGET_P50_MS),
        against_health("event sent → email at sink", total, "p95"),
        against_health("event sent → email at sink", total, "p99", TARGET_P99_MS),
        report.row("event sent → email at sink, max", total["max"], "ms"),
        report.row("event accepted (2xx) → email at sink, p50", after["p50"], "ms"),
        report.row("event accepted (2xx) → email at sink, p99", after["p99"], "ms"),
        against_health("POST /events/send round trip", http, "p50"),
        against_health("POST /events/send round trip", http, "p99"),
        report.row("events timed", figures["timed"], "events"),
        report.row("events lost (accepted, no email)", figures["lost"], "events"),
        report.row("events refused (non-2xx)", figures["rejected"], "events"),
        report.row(
            "of which no answer read (the client's connection failed)",
            figures.get("unanswered", 0),
            "events",
        ),
        report.row("achieved rate", figures["achieved_rate"], "events/s"),
    ]
