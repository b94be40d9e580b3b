"""The `/metrics` exposition: engine.metrics.snapshot as Prometheus metric families."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from engine.metrics import RECENT_HOURS, Snapshot

# step_rollups counters, as the `status` label of automations_steps
STEP_ENDINGS = {
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "skipped_unsubscribed": "skipped",
    "skipped_branch_not_taken": "skipped",
    "skipped_contact_deleted": "skipped",
}


class SnapshotCollector:
    """One scrape's metric families, from a snapshot read in one transaction."""

    def __init__(self, data: Snapshot) -> None:
        self.data = data

    def collect(self) -> Iterator[Metric]:
        yield self._labelled("automations_runs", "Runs by status", self.data.runs_by_status)
        yield self._labelled(
            "automations_emails", "Outbox emails by status", self.data.emails_by_status
        )
        yield GaugeMetricFamily(
            "automations_queue_lag_seconds",
            "How long the oldest due step has been waiting for a worker",
            value=self.data.queue_lag_seconds,
        )
        yield self._steps()
        yield GaugeMetricFamily(
            "automations_sweeper_last_tick_age_seconds",
            "Seconds since the sweeper last completed a tick (before its first, since the "
            "schema was upgraded to hold the heartbeat; +Inf if the heartbeat row is missing)",
            value=self.data.sweeper.age_seconds,
        )
        yield GaugeMetricFamily(
            "automations_sweeper_late_after_seconds",
            "The last tick's age above which the sweeper is late "
            "(AUTOMATIONS_SWEEPER_LATE_AFTER_SECONDS)",
            value=self.data.sweeper.late_after_seconds,
        )
        operations = GaugeMetricFamily(
            "automations_operations_under_way",
            "Background work the workers carry out: `cancel_runs` automations whose runs a stop "
            "or a deletion is cancelling, `bulk_retry` and `bulk_replay` running operations",
            labels=["operation"],
        )
        for name, count in sorted(self.data.operations_under_way.items()):
            operations.add_metric([name], count)
        yield operations
        durations = GaugeMetricFamily(
            "automations_run_duration_quantile_seconds",
            f"Run duration percentiles (nearest rank, within 4.4 %) of the runs created in the "
            f"current UTC hour and the {RECENT_HOURS - 1} before it that ended by themselves",
            labels=["quantile"],
        )
        for name, seconds in self.data.recent_run_durations.items():
            if seconds is not None:
                durations.add_metric([str(int(name[1:]) / 100)], seconds)
        yield durations

    @staticmethod
    def _labelled(name: str, documentation: str, values: dict[str, int]) -> Metric:
        family = GaugeMetricFamily(name, documentation, labels=["status"])
        for status, count in sorted(values.items()):
            family.add_metric([status], count)
        return family

    def _steps(self) -> Metric:
        steps = GaugeMetricFamily(
            "automations_steps",
            "Every step row by type: `reached` all of them, the others by how they ended",
            labels=["step_type", "status"],
        )
        for kind, counts in sorted(self.data.steps_by_type.items()):
            by_status: dict[str, int] = {"reached": counts.get("steps", 0)}
            for column, status in STEP_ENDINGS.items():
                by_status[status] = by_status.get(status, 0) + counts.get(column, 0)
            for status, count in by_status.items():
                steps.add_metric([kind, status], count)
        return steps


def exposition(data: Snapshot) -> bytes:
    """The text format Prometheus scrapes."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(data))
    return generate_latest(registry)
