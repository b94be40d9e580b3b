"""engine.idempotency on each database: which answers are kept for replay, and races."""

from __future__ import annotations

import pytest

from engine import idempotency
from engine.db import transaction
from tests.integration.harness import Stack


def begin(stack: Stack, scope: str, fingerprint: str = "f") -> idempotency.Replay | None:
    with transaction(stack.runtime.sessions) as session:
        return idempotency.begin(session, scope, fingerprint, now=stack.clock.now())


def finish(stack: Stack, scope: str, status: int) -> None:
    with transaction(stack.runtime.sessions) as session:
        idempotency.finish(session, scope, status, b'{"answer": true}')


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_answers_about_the_circumstances_are_not_kept(rt_stack: Stack, status: int) -> None:
    assert begin(rt_stack, "scope") is None
    finish(rt_stack, "scope", status)
    # Not replayed: the retry runs (for a 429, once retry-after has passed).
    assert begin(rt_stack, "scope") is None


@pytest.mark.parametrize("status", [200, 201, 202, 404, 409, 422])
def test_answers_about_the_request_are_replayed(rt_stack: Stack, status: int) -> None:
    assert begin(rt_stack, "scope") is None
    finish(rt_stack, "scope", status)
    assert begin(rt_stack, "scope") == idempotency.Replay(status, b'{"answer": true}')
    with pytest.raises(idempotency.IdempotencyConflict) as other:
        begin(rt_stack, "scope", fingerprint="another body")
    assert other.value.code == "invalid_idempotent_request"


def test_a_second_begin_while_the_first_runs_is_a_conflict(rt_stack: Stack) -> None:
    assert begin(rt_stack, "scope") is None
    with pytest.raises(idempotency.IdempotencyConflict) as racing:
        begin(rt_stack, "scope")
    assert racing.value.code == "concurrent_idempotent_requests"
