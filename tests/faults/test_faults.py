"""Each fault on its own, under a small load: no run lost, no email sent twice under two ids.

The long form with more runs and all faults at once is `python -m bench.faults`.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, update

from bench.faultlab.driver import Driver
from bench.faultlab.lab import Lab
from bench.faultlab.report import Result
from bench.faultlab.scenarios import (
    SCENARIOS,
    SHORT_FORM,
    Scenario,
    drive,
    evaluate,
    run_scenario,
)
from bench.faultlab.sinks import Delivery
from engine.db import transaction
from models.rollups import RunRollup
from models.tables import Contact

SEED = 20260501
RUNS = 40
MAX_FAULTS = 5  # per injector: enough to hit every phase, few enough to stay quick
TEMPO = 2.0  # faults twice as often as in the long form: the load is short


def test_the_checker_sees_lost_and_copied_emails_a_rollup_drift_and_an_undone_step(
    lab: Lab,
) -> None:
    outcome = drive(lab, SCENARIOS["baseline"], runs=6, seed=SEED, patience=40)
    clean = evaluate(lab, outcome)
    assert (clean.lost, clean.duplicated, clean.resends) == (0, 0, 0)
    assert (clean.problems, clean.stalls) == ([], [])

    missing, again, *rest = outcome.deliveries
    impostor = Delivery(str(uuid.uuid4()), missing.to, missing.subject)
    outcome.deliveries = [again, again, impostor, *rest]
    broken = evaluate(lab, outcome)
    assert (broken.lost, broken.duplicated, broken.resends) == (1, 1, 1)

    drift = RunRollup(automation_id=uuid.uuid4(), span=1, hour=1, shard=99, completed=1)
    with transaction(lab.runtime.sessions) as session:
        session.add(drift)
    try:
        drifted = evaluate(lab, outcome)
    finally:
        with transaction(lab.runtime.sessions) as session:
            session.execute(delete(RunRollup).where(RunRollup.automation_id == drift.automation_id))
    assert [p for p in drifted.problems if p.startswith("rollup differs")] == [
        f"rollup differs from a recount: run_rollups automation {drift.automation_id} "
        "hour 1970-01-01 01:00 UTC: completed kept 1, recounted 0"
    ]

    # The update that named the contact, as if it had not committed though its step did.
    paying = next(contact for contact in outcome.contacts if contact.plan == "paid")
    with transaction(lab.runtime.sessions) as session:
        named = Contact.email == paying.email
        session.execute(update(Contact).where(named).values(first_name=None))
    undone = evaluate(lab, outcome)
    assert [p for p in undone.problems if "contact is None" in p] == [
        f"run {paying.run_id}: contact is None at stage 'paid' after event_received, "
        "expected 'Ada' at 'paid'"
    ]


def test_the_checker_sees_a_run_of_a_stopped_automation_that_went_on(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Driver, "stop_drip", lambda self, drip: None)  # the stop never comes
    unstopped = Scenario("stop-never-comes", stop_drip=True)
    outcome = drive(lab, unstopped, runs=6, seed=SEED, patience=5)
    found = evaluate(lab, outcome)
    assert (found.runs, found.lost) == (12, 6)  # the second automation's runs never end
    stuck = [p for p in found.problems if "stopped automation's run stuck running" in p]
    assert len(stuck) == 6 and found.stalls == ["every run to end"]


@pytest.mark.parametrize("fault", SHORT_FORM)
def test_every_run_ends_and_every_email_is_sent_once(
    lab: Lab, results: list[Result], fault: str
) -> None:
    result = run_scenario(
        lab,
        SCENARIOS[fault],
        runs=RUNS,
        seed=SEED,
        patience=40,
        max_faults=MAX_FAULTS,
        tempo=TEMPO,
    )
    results.append(result)
    assert result.injected > 0, "the fault was never injected"
    missed = [point for point, kills in lab.checkpoint_kills().items() if not kills]
    assert not missed, f"no worker reached {missed}"
    assert result.lost == 0, result.problems
    assert result.duplicated == 0, result.problems
    assert (result.problems, result.stalls) == ([], [])
