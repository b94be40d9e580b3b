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
    label = "GET /health round trip"
    if not total["count"]:
        return [report.row("emails at the sink", 0, "emails", target="> 0", met=False)]
    return [
        report.row(
            "event sent → email at sink, p50",
            total["p50"],
            "ms",
            baseline=health["p50"],
            baseline_label=label + " p50",
            target=f"≤ {TARGET_P50_MS:g} ms",
            met=total["p50"] <= TARGET_P50_MS,
        ),
        report.row(
            "event sent → email at sink, p95",
            total["p95"],
            "ms",
            baseline=health["p95"],
            baseline_label=label + " p95",
        ),
        report.row(
            "event sent → email at sink, p99",
            total["p99"],
            "ms",
            baseline=health["p99"],
            baseline_label=label + " p99",
            target=f"≤ {TARGET_P99_MS:g} ms",
            met=total["p99"] <= TARGET_P99_MS,
        ),
        report.row("event sent → email at sink, max", total["max"], "ms"),
        report.row("event accepted (2xx) → email at sink, p50", after["p50"], "ms"),
        report.row("event accepted (2xx) → email at sink, p99", after["p99"], "ms"),
        report.row(
            "POST /events/send round trip, p50",
            http["p50"],
            "ms",
            baseline=health["p50"],
            baseline_label=label + " p50",
        ),
        report.row(
            "POST /events/send round trip, p99",
            http["p99"],
            "ms",
            baseline=health["p99"],
            baseline_label=label + " p99",
        ),
        report.row("events timed", figures["timed"], "events"),
        report.row("events lost (accepted, no email)", figures["lost"], "events"),
        report.row("events refused (non-2xx)", figures["rejected"], "events"),
        report.row("achieved rate", figures["achieved_rate"], "events/s"),
    ]
