"""Each fault on its own, under a small load: no run lost, no email sent twice under two ids.

The long form with more runs and all faults at once is `python -m bench.faults`.
"""

from __future__ import annotations

import uuid

import pytest

from bench.faultlab.lab import Lab
from bench.faultlab.report import Result
from bench.faultlab.scenarios import SCENARIOS, SHORT_FORM, drive, evaluate, run_scenario
from bench.faultlab.sinks import Delivery

SEED = 20260501
RUNS = 40
MAX_FAULTS = 5  # per injector: enough to hit every phase, few enough to stay quick
TEMPO = 2.0  # faults twice as often as in the long form: the load is short


def test_the_checker_sees_a_lost_email_a_silent_copy_and_a_resend(lab: Lab) -> None:
    outcome = drive(lab, SCENARIOS["baseline"], runs=6, seed=SEED, patience=40)
    clean = evaluate(lab, outcome)
    assert (clean.lost, clean.duplicated, clean.resends, clean.problems) == (0, 0, 0, [])

    missing, again, *rest = outcome.deliveries
    impostor = Delivery(str(uuid.uuid4()), missing.to, missing.subject)
    outcome.deliveries = [again, again, impostor, *rest]
    broken = evaluate(lab, outcome)
    assert (broken.lost, broken.duplicated, broken.resends) == (1, 1, 1)


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
    assert result.lost == 0, result.problems
    assert result.duplicated == 0, result.problems
    assert result.problems == []
