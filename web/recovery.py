"""Recovery from the dashboard: retry or replay one run, and the failed runs in bulk.

Like the API's routes, these call the engine, then hand the messages it returns to the
dispatcher once its transaction has committed.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from engine import bulk, dashboard, recovery
from engine.dispatch import commit_then_dispatch
from engine.errors import AutomationsError
from engine.recovery import RetryConflict, RunNotReplayable, RunNotRetryable
from engine.runtime import Runtime
from models.enums import BulkAction
from web import links
from web import session as cookies
from web.guard import Form, Rt, Sender, User, acting, viewing
from web.render import error_page, page

router = APIRouter(include_in_schema=False)


def _base(request: Request, automation_id: uuid.UUID) -> str:
    return f"{links.root(request.scope.get('root_path'))}/automations/{automation_id}"


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _still_signed_in(rt: Runtime, user: cookies.DashboardSession) -> None:
    """The sign-in check of `viewing`, before an engine call that opens its own transactions."""
    with viewing(rt, user):
        return


def _not_done(request: Request, title: str, refused: AutomationsError, back: str) -> Response:
    """The engine's reason, on the dashboard's error page, with a way back to the run."""
    status = 409 if isinstance(refused, RetryConflict) else 422
    return error_page(request, status, title, refused.message, back=back)


@router.post("/automations/{automation_id}/runs/{run_id}/retry")
def retry_run(
    request: Request,
    automation_id: str,
    run_id: str,
    rt: Rt,
    user: User,
    form: Form,
    sender: Sender,
) -> Response:
    """Retry a failed run from its failed step, or resume a cancelled one (`from`)."""
    key, run_key = links.parse_uuid(automation_id), links.parse_uuid(run_id)
    from_cancelled = recovery.parse_from(form.get("from") or None)
    back = f"{_base(request, key)}/runs/{run_key}"
    _still_signed_in(rt, user)
    try:
        retried = recovery.retry_run(rt, key, run_key, from_cancelled=from_cancelled)
    except (RunNotRetryable, RetryConflict) as refused:
        return _not_done(request, "The run was not retried", refused, back)
    sender.dispatch(retried.dispatches)
    return _redirect(f"{back}?notice={'resumed' if from_cancelled else 'retried'}")


@router.post("/automations/{automation_id}/runs/{run_id}/replay")
def replay_run(
    request: Request,
    automation_id: str,
    run_id: str,
    rt: Rt,
    user: User,
    form: Form,
    sender: Sender,
) -> Response:
    """A new run of the current version with the run's event and contact; land on it. The
    form carries the replays the page showed: posted twice (two tabs, a double submit), it
    replays once."""
    key, run_key = links.parse_uuid(automation_id), links.parse_uuid(run_id)
    base = _base(request, key)
    seen = recovery.parse_replays_seen(form.get("replays_seen"))
    try:
        replayed = commit_then_dispatch(
            acting(rt, user),
            sender,
            lambda s: recovery.replay_run(
                s, rt, key, run_key, now=rt.clock.now(), replays_seen=seen
            ),
        )
    except RunNotReplayable as refused:
        return _not_done(request, "The run was not replayed", refused, f"{base}/runs/{run_key}")
    return _redirect(f"{base}/runs/{replayed.run_id}?notice=replayed")


def _bulk_form(
    request: Request,
    automation_id: str,
    action: BulkAction,
    rt: Runtime,
    user: cookies.DashboardSession,
    error_code: str | None,
) -> Response:
    key = links.parse_uuid(automation_id)
    code = (error_code or "").strip() or None
    with viewing(rt, user) as session:
        view = dashboard.automation_view(session, key)
        plan = dashboard.bulk_plan(session, key, action, error_code=code)
    return page(
        request,
        "automation_bulk.html",
        view=view,
        tab="runs",
        base=_base(request, key),
        action=str(action),
        plan=plan,
        error_code=code,
        chunk=bulk.CHUNK_SIZE,
    )


def _start_bulk(
    request: Request,
    automation_id: str,
    action: BulkAction,
    rt: Runtime,
    user: cookies.DashboardSession,
    form: dict[str, str],
    sender: Sender,
) -> Response:
    key = links.parse_uuid(automation_id)
    wanted = dashboard.failed_runs(key, action, error_code=form.get("error_code") or None)
    started = commit_then_dispatch(
        acting(rt, user), sender, lambda s: bulk.start_bulk(s, wanted, now=rt.clock.now())
    )
    return _redirect(f"{_base(request, key)}/runs/retries/{started.bulk.id}?notice=bulk_started")


@router.get("/automations/{automation_id}/runs/retry")
def bulk_retry_form(
    request: Request, automation_id: str, rt: Rt, user: User, error_code: str | None = None
) -> Response:
    """How many failed runs a bulk retry would take (a dry run), and the confirmation."""
    return _bulk_form(request, automation_id, BulkAction.RETRY, rt, user, error_code)


@router.post("/automations/{automation_id}/runs/retry")
def bulk_retry(
    request: Request, automation_id: str, rt: Rt, user: User, form: Form, sender: Sender
) -> Response:
    """Retry the failed runs (of one error code, if chosen); workers do it in chunks."""
    return _start_bulk(request, automation_id, BulkAction.RETRY, rt, user, form, sender)


@router.get("/automations/{automation_id}/runs/replay")
def bulk_replay_form(
    request: Request, automation_id: str, rt: Rt, user: User, error_code: str | None = None
) -> Response:
    """How many failed runs not replayed yet a bulk replay would take, and the confirmation."""
    return _bulk_form(request, automation_id, BulkAction.REPLAY, rt, user, error_code)


@router.post("/automations/{automation_id}/runs/replay")
def bulk_replay(
    request: Request, automation_id: str, rt: Rt, user: User, form: Form, sender: Sender
) -> Response:
    """Replay the failed runs not replayed yet on the current version, in chunks."""
    return _start_bulk(request, automation_id, BulkAction.REPLAY, rt, user, form, sender)


@router.post("/automations/{automation_id}/runs/retries/{bulk_id}/cancel")
def cancel_bulk(
    request: Request, automation_id: str, bulk_id: str, rt: Rt, user: User, form: Form
) -> Response:
    """Cancel a bulk operation: the runs it has not reached are left as they were."""
    key, bulk_key = links.parse_uuid(automation_id), links.parse_uuid(bulk_id)
    with acting(rt, user) as session:
        bulk.cancel_bulk(session, key, bulk_key, now=rt.clock.now())
    return _redirect(f"{_base(request, key)}/runs/retries/{bulk_key}?notice=bulk_cancelled")


@router.get("/automations/{automation_id}/runs/retries/{bulk_id}")
def bulk_progress(
    request: Request, automation_id: str, bulk_id: str, rt: Rt, user: User
) -> Response:
    """A bulk operation's progress, refreshing while it runs, and the runs it did not take."""
    key, bulk_key = links.parse_uuid(automation_id), links.parse_uuid(bulk_id)
    with viewing(rt, user) as session:
        view = dashboard.automation_view(session, key)
        operation, items = bulk.get_bulk(session, key, bulk_key)
    return page(
        request,
        "bulk.html",
        view=view,
        tab="runs",
        base=_base(request, key),
        bulk=operation,
        items=items,
        notice=links.NOTICES.get(request.query_params.get("notice", "")),
    )
