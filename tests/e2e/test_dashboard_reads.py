"""The dashboard's aggregated reads agree with the API's metrics on a realistic history."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import func, select

from bench.dashboard_data import insert_history
from engine import dashboard, metrics
from engine.db import transaction
from engine.store import metrics as metrics_store
from engine.store.metrics import StepCount
from models.enums import OutboxStatus, RunStatus
from models.tables import OutboxEmail, Run, RunStep
from tests.integration.harness import Stack

UNSUBSCRIBED = ("skipped", "unsubscribed")

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)


def compare(stack: Stack, automation_id: object, since: dt.datetime, granularity: str) -> None:
    """The aggregates against the same numbers counted in Python from the window's rows."""
    now = stack.clock.now()
    start, end = since.isoformat(), now.isoformat()
    with transaction(stack.runtime.sessions) as session:
        ours = dashboard.metrics_view(
            session, automation_id, start=start, end=end, granularity=granularity, now=now
        )
        api = metrics.automation_metrics(
            session, automation_id, start=start, end=end, granularity=granularity, now=now
        )
        window = Run.automation_id == automation_id
        window &= (Run.created_at >= ours.window.start) & (Run.created_at < ours.window.end)
        rows = list(
            session.execute(
                select(Run.status, Run.created_at, Run.started_at, Run.completed_at).where(window)
            )
        )
        steps = Counter(
            session.execute(
                select(RunStep.step_key, RunStep.step_type, RunStep.status, RunStep.skip_reason)
                .join(Run, Run.id == RunStep.run_id)
                .where(window)
            )
        )
        sent = session.scalar(
            select(func.count())
            .select_from(OutboxEmail)
            .join(Run, Run.id == OutboxEmail.run_id)
            .where(window, OutboxEmail.status == OutboxStatus.SENT)
        )
        graph = dashboard.automation_view(session, automation_id).graph
    assert sum(ours.by_status.values()) == len(rows) > 0
    assert (
        ours.by_status
        == api.runs.by_status
        == {
            **{str(status): 0 for status in RunStatus},
            **Counter(status for status, *_ in rows),
        }
    )
    started = Counter(
        (metrics.bucket_index(ours.window, made), status) for status, made, *_ in rows
    )
    assert [b.by_status for b in ours.started] == [b.by_status for b in api.runs.series]
    assert {
        (index, status): count
        for index, bucket in enumerate(ours.started)
        for status, count in bucket.by_status.items()
        if count
    } == dict(started)
    durations = sorted(
        (ended - began).total_seconds()
        for status, _, began, ended in rows
        if status in metrics.TIMED and began is not None and ended is not None
    )
    assert ours.finished_runs == api.runs.finished_runs == len(durations)
    for name, q in metrics.PERCENTILES.items():
        expected = metrics.percentile(durations, q)
        assert expected is not None and ours.percentiles[name] == expected
        assert api.runs.percentiles[name] == expected
    counted = [StepCount(*key, count) for key, count in steps.items()]
    expected_steps = metrics.step_metrics(counted, [graph] if graph is not None else [])
    as_tuples = [(s.key, s.reached, s.completed, s.failed, s.skipped) for s in ours.steps]
    assert as_tuples == [(s.key, s.reached, s.completed, s.failed, s.skipped) for s in api.steps]
    assert as_tuples == [
        (s.key, s.reached, s.completed, s.failed, s.skipped) for s in expected_steps
    ]
    assert ours.emails_sent == api.emails_sent == sent > 0
    unsubscribed = sum(
        count for (_, _, status, reason), count in steps.items() if (status, reason) == UNSUBSCRIBED
    )
    assert ours.emails_skipped_unsubscribed == api.emails_skipped_unsubscribed == unsubscribed
    finished = Counter(
        (metrics.bucket_index(ours.window, ended), status)
        for status, _, _, ended in rows
        if ended is not None and ours.window.start <= ended < ours.window.end
    )
    assert {
        (index, status): count
        for index, bucket in enumerate(ours.finished)
        for status, count in bucket.by_status.items()
        if count
    } == dict(finished)


@pytest.mark.parametrize("probe_limit", [metrics_store.PROBE_LIMIT, 10])
def test_metrics_match_the_api(
    rt_stack: Stack, probe_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small limit takes the hash-join spelling of the same counts.
    monkeypatch.setattr(metrics_store, "PROBE_LIMIT", probe_limit)
    now = rt_stack.clock.now()
    sample = insert_history(rt_stack.runtime.sessions.kw["bind"], 1500, now, contacts=300)
    busiest = sample["busiest"]
    compare(rt_stack, busiest, now - dt.timedelta(days=30), "day")
    compare(rt_stack, busiest, now - dt.timedelta(days=7), "day")
    compare(rt_stack, busiest, now - dt.timedelta(hours=48), "hour")
    with transaction(rt_stack.runtime.sessions) as session:
        view = dashboard.automation_view(session, busiest)
        counts = dashboard.step_counts(
            session, busiest, view.graph, since=now - dt.timedelta(days=7), until=now
        )
    assert counts["start"].reached == counts["start"].completed > 0


def test_overview_counts_the_last_day(rt_stack: Stack) -> None:
    now = rt_stack.clock.now()
    insert_history(rt_stack.runtime.sessions.kw["bind"], 1000, now, contacts=100)
    with transaction(rt_stack.runtime.sessions) as session:
        page = dashboard.overview(session, after=None, before=None, now=now)
        runs = list(session.execute(select(Run.automation_id, Run.status, Run.created_at)))
    assert len(page.items) == 4
    for row in page.items:
        mine = [r for r in runs if r.automation_id == row.automation.id]
        recent = Counter(r.status for r in mine if r.created_at >= now - dashboard.RECENT)
        assert {k: v for k, v in row.recent.items() if v} == dict(recent)
        assert row.last_run_at == max(r.created_at for r in mine)
