import itertools

import pytest

from engine.transitions import (
    RUN_TRANSITIONS,
    STEP_INITIAL,
    STEP_TRANSITIONS,
    can_move_run,
    can_move_step,
    final_run_status,
)
from models.enums import (
    RUN_TERMINAL,
    STEP_TERMINAL,
    RunStatus,
    SkipReason,
    StepStatus,
    StepType,
)

S = StepStatus
R = RunStatus

ALLOWED_STEP_MOVES = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.SKIPPED),
    (S.PENDING, S.CANCELLED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.SKIPPED),
    (S.RUNNING, S.WAITING),
    (S.RUNNING, S.PENDING),
    (S.RUNNING, S.RUNNING),
    (S.RUNNING, S.CANCELLED),
    (S.WAITING, S.RUNNING),
    (S.WAITING, S.COMPLETED),
    (S.WAITING, S.CANCELLED),
}

ALLOWED_RUN_MOVES = {(R.RUNNING, b) for b in (R.COMPLETED, R.FAILED, R.CANCELLED, R.SKIPPED)}


def test_every_step_status_has_a_row() -> None:
    assert set(STEP_TRANSITIONS) == set(StepStatus)


def test_every_run_status_has_a_row() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(StepStatus, StepStatus)))
def test_every_pair_of_step_statuses(a: StepStatus, b: StepStatus) -> None:
    assert can_move_step(a, b) is ((a, b) in ALLOWED_STEP_MOVES)


@pytest.mark.parametrize(("a", "b"), list(itertools.product(RunStatus, RunStatus)))
def test_every_pair_of_run_statuses(a: RunStatus, b: RunStatus) -> None:
    assert can_move_run(a, b) is ((a, b) in ALLOWED_RUN_MOVES)


@pytest.mark.parametrize("status", sorted(STEP_TERMINAL))
def test_terminal_step_statuses_have_no_way_out(status: StepStatus) -> None:
    assert STEP_TRANSITIONS[status] == frozenset()
    assert not any(can_move_step(status, b) for b in StepStatus)


@pytest.mark.parametrize("status", sorted(RUN_TERMINAL))
def test_terminal_run_statuses_have_no_way_out(status: RunStatus) -> None:
    assert RUN_TRANSITIONS[status] == frozenset()
    assert not any(can_move_run(status, b) for b in RunStatus)


def test_non_terminal_step_statuses_can_always_end() -> None:
    # Every active status reaches a terminal one, so no step can be stuck by the table.
    for status in set(StepStatus) - STEP_TERMINAL:
        assert STEP_TRANSITIONS[status] & {S.COMPLETED, S.CANCELLED}


def test_initial_statuses() -> None:
    assert frozenset({S.PENDING, S.SKIPPED}) == STEP_INITIAL


EMAIL = StepType.SEND_EMAIL
DELAY = StepType.DELAY
UNSUB = SkipReason.UNSUBSCRIBED


def test_all_completed_is_completed() -> None:
    steps = [(StepType.TRIGGER, S.COMPLETED, None), (EMAIL, S.COMPLETED, None)]
    assert final_run_status(steps) == R.COMPLETED


def test_no_steps_is_completed() -> None:
    assert final_run_status([]) == R.COMPLETED


def test_branch_not_taken_is_still_completed() -> None:
    steps = [(EMAIL, S.COMPLETED, None), (EMAIL, S.SKIPPED, SkipReason.BRANCH_NOT_TAKEN)]
    assert final_run_status(steps) == R.COMPLETED


def test_contact_deleted_skip_is_still_completed() -> None:
    steps = [
        (StepType.CONTACT_DELETE, S.COMPLETED, None),
        (EMAIL, S.SKIPPED, SkipReason.CONTACT_DELETED),
    ]
    assert final_run_status(steps) == R.COMPLETED


def test_unsubscribed_email_makes_the_run_skipped() -> None:
    steps = [(EMAIL, S.SKIPPED, UNSUB), (DELAY, S.COMPLETED, None)]
    assert final_run_status(steps) == R.SKIPPED


def test_only_a_send_email_skip_counts_as_unsubscribed() -> None:
    assert final_run_status([(DELAY, S.SKIPPED, UNSUB)]) == R.COMPLETED


def test_failed_beats_skipped() -> None:
    steps = [(EMAIL, S.SKIPPED, UNSUB), (DELAY, S.FAILED, None)]
    assert final_run_status(steps) == R.FAILED


def test_cancelled_beats_failed_and_skipped() -> None:
    steps = [(EMAIL, S.SKIPPED, UNSUB), (DELAY, S.FAILED, None), (EMAIL, S.CANCELLED, None)]
    assert final_run_status(steps) == R.CANCELLED
    assert final_run_status(iter(reversed(steps))) == R.CANCELLED
