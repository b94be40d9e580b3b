"""The dashboard's aggregated reads agree with the API's metrics on a realistic history."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import func, select

from bench.dashboard_data import insert_history
from engine import dashboard, metrics
from engine.db import transaction
from engine.percentiles import bucket_of, percentiles
from engine.store.metrics import StepTotals
from engine.store.rollup import hour_start, step_column
from engine.store.rollup_rebuild import rebuild
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
        # The rollup counts whole hours: the window's runs are those of the hours it overlaps.
        hours = metrics.hours_of(ours.window)
        first, last = hour_start(hours.first), hour_start(hours.end)
        window = Run.automation_id == automation_id
        window &= (Run.created_at >= first) & (Run.created_at < last)
        rows = list(
            session.execute(
                select(Run.status, Run.created_at, Run.started_at, Run.completed_at).where(window)
            )
        )
        steps = Counter(
            session.execute(
                select(
                    RunStep.step_key,
                    RunStep.step_type,
                    RunStep.status,
                    RunStep.skip_reason,
                    RunStep.started_at.is_(None),
                )
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
        ends = list(
            session.execute(
                select(Run.status, Run.completed_at).where(
                    Run.automation_id == automation_id,
                    Run.completed_at >= first,
                    Run.completed_at < last,
                )
            )
        )
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
    durations = Counter(
        bucket_of((ended - began).total_seconds())
        for status, _, began, ended in rows
        if status in ("completed", "failed", "skipped") and began and ended
    )
    assert ours.finished_runs == api.runs.finished_runs == sum(durations.values())
    assert ours.percentiles == api.runs.percentiles == percentiles(durations)
    assert None not in ours.percentiles.values()
    expected_steps = metrics.step_metrics(totals(steps), [graph] if graph is not None else [])
    as_tuples = [(s.key, s.reached, s.completed, s.failed, s.skipped) for s in ours.steps]
    assert as_tuples == [(s.key, s.reached, s.completed, s.failed, s.skipped) for s in api.steps]
    assert as_tuples == [
        (s.key, s.reached, s.completed, s.failed, s.skipped) for s in expected_steps
    ]
    assert ours.emails_sent == api.emails_sent == sent > 0
    unsubscribed = sum(
        count
        for (_, _, status, reason, _), count in steps.items()
        if (status, reason) == UNSUBSCRIBED
    )
    assert ours.emails_skipped_unsubscribed == api.emails_skipped_unsubscribed == unsubscribed
    # Runs that ended in the window's hours, whenever they started.
    finished = Counter((metrics.bucket_index(ours.window, ended), status) for status, ended in ends)
    assert {
        (index, status): count
        for index, bucket in enumerate(ours.finished)
        for status, count in bucket.by_status.items()
        if count
    } == dict(finished)


def totals(steps: Counter[tuple[str, str, str, str | None, bool]]) -> list[StepTotals]:
    """Step rows counted by (key, type, status, skip reason, never started), as the rollup
    sums them."""
    found: dict[tuple[str, str], Counter[str]] = {}
    for (key, kind, status, reason, unstarted), count in steps.items():
        counts = found.setdefault((key, kind), Counter())
        counts["steps"] += count
        column = step_column(status, reason)
        if column is not None:
            counts[column] += count
        if status == "skipped" and unstarted:
            counts["unreached"] += count
    names = [
        name for name in StepTotals.__dataclass_fields__ if name not in ("step_key", "step_type")
    ]
    return [StepTotals(key, kind, *(c[name] for name in names)) for (key, kind), c in found.items()]


def test_metrics_match_the_api(rt_stack: Stack) -> None:
    now = rt_stack.clock.now()
    bind = rt_stack.runtime.sessions.kw["bind"]
    sample = insert_history(bind, 1500, now, contacts=300)
    # The history was written behind the engine's back: count it into the rollup.
    with bind.begin() as conn:
        rebuild(conn)
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
