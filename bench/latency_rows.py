"""bench.latency's table: its figures against the targets and the GET /health baseline, and the
time split by stage."""

from __future__ import annotations

from typing import Any

from bench import report

TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0


def stage_rows(stages: dict[str, Any]) -> list[report.Row]:
    described = {
        "api": "request → 202 (ingestion committed, step published)",
        "queue": "ingestion begins → worker claims the email step",
        "prepare": "claim → SMTP transaction begins (render, outbox row, commit)",
        "smtp": "SMTP transaction (MAIL FROM → message accepted)",
    }
    return [
        report.row(f"stage {name}: {described[name]}, {quantile}", figures[quantile], "ms")
        for name, figures in stages.items()
        if figures["count"]
        for quantile in ("p50", "p99")
    ]


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
        report.row("achieved rate", figures["achieved_rate"], "events/s"),
    ]
