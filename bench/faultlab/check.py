"""The consistency checker: run and step records against the graph, email against the sinks,
the metrics' rollup against a recount."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.faultlab.load import (
    AWAIT,
    DRIP_NAME,
    FILED,
    HEAD,
    KNOWN,
    LAPSED,
    LATE,
    MEMBERS,
    PAUSE,
    PAYING,
    RECEIPT,
    SENDS,
    SUBJECTS,
    THANKED,
    TIP,
    TIP_AFTER,
    WELCOME,
    Contact,
)
from bench.faultlab.sinks import Delivery
from engine.rollup_check import describe
from engine.store.rollup_rebuild import differences
from models.enums import RUN_TERMINAL, STEP_ACTIVE
from models.tables import Automation, OutboxEmail, Run, RunStep, Segment, SegmentMembership
from models.tables import Contact as ContactRow

# Each branch of the wait: the steps it runs, the steps it skips as branch_not_taken.
BRANCH_STEPS = {
    "event_received": ((RECEIPT, THANKED, FILED), (LATE, LAPSED)),
    "timeout": ((LATE, LAPSED), (RECEIPT, THANKED, FILED)),
}
KEYS = ("start", *HEAD, WELCOME, PAUSE, AWAIT, RECEIPT, THANKED, FILED, LATE, LAPSED)
# What the instant steps of each branch leave on the contact: its first name, its stage, and
# whether it is in the paying segment (every one is in MEMBERS).
EFFECTS = {"event_received": ("Ada", "paid", True), "timeout": ("Late", "lapsed", False)}


@dataclass
class Findings:
    """What the checker counted; `lost` and `duplicated` are the figures that must be zero."""

    runs: int = 0
    emails: int = 0  # emails that should have been sent
    lost: int = 0
    duplicated: int = 0  # silent duplicates: a second email for a (run, step) under another id
    resends: int = 0  # extra copies with the same Message-ID (SMTP's at-least-once window)
    problems: list[str] = field(default_factory=list)

    def problem(self, run: object, text: str) -> None:
        self.problems.append(f"run {run}: {text}")


def expected_branch(contact: Contact) -> str | None:
    """The branch a contact's wait must take; None when either is right (a true race)."""
    if contact.plan == "paid":
        return "event_received"
    if contact.plan == "silent" or (contact.plan == "race" and contact.delta_us == 0):
        # At the due instant the wait is over: an event stamped then comes too late.
        return "timeout"
    return None


def check(session: Session, contacts: list[Contact], deliveries: list[Delivery]) -> Findings:
    found = Findings(runs=len(contacts))
    runs = session.execute(
        select(ContactRow.email, Run, Automation.name)
        .join(Run, Run.contact_id == ContactRow.id)
        .join(Automation, Automation.id == Run.automation_id)
    )
    by_email: dict[str, list[Run]] = defaultdict(list)
    drips: dict[str, list[Run]] = defaultdict(list)  # the stopped automation's, if any
    for email, run, name in runs.all():
        (drips if name == DRIP_NAME else by_email)[email].append(run)
    steps: dict[uuid.UUID, dict[str, RunStep]] = defaultdict(dict)
    for step in session.scalars(select(RunStep)):
        steps[step.run_id][step.step_key] = step
    outbox = {(row.run_id, row.step_key): row for row in session.scalars(select(OutboxEmail))}
    people = {row.email: row for row in session.scalars(select(ContactRow))}
    joined = select(Segment.name, SegmentMembership.contact_id).join(
        Segment, Segment.id == SegmentMembership.segment_id
    )
    members = {(name, contact_id) for name, contact_id in session.execute(joined)}
    copies = Counter(d.email_id for d in deliveries)
    for contact in contacts:
        mine = by_email.get(contact.email, [])
        if not mine:
            found.lost += 1
            found.problem(contact.email, "no run started")
            continue
        found.duplicated += len(mine) - 1  # a second run would mail the contact twice
        for run in mine:
            _check_run(found, contact, run, steps[run.id], outbox, copies)
            _check_effects(found, run, steps[run.id], people[contact.email], members)
        for run in drips.get(contact.email, []):
            found.runs += 1
            _check_stopped_run(found, run, steps[run.id], outbox.get((run.id, TIP)), copies)
        found.duplicated += max(len(drips.get(contact.email, [])) - 1, 0)
    _check_deliveries(found, deliveries, outbox)
    # The metrics' rollup, kept in each transaction, survived the faults: it equals a recount.
    for difference in differences(session.connection()):
        found.problems.append(f"rollup differs from a recount: {describe(difference)}")
    return found


def _check_run(
    found: Findings,
    contact: Contact,
    run: Run,
    steps: dict[str, RunStep],
    outbox: dict[tuple[uuid.UUID, str], OutboxEmail],
    copies: Counter[str | None],
) -> None:
    if _stuck(found, run, steps, "stuck"):
        return
    if run.status != "completed":
        found.problem(run.id, f"ended {run.status}")
    if run.completed_at is None or run.completed_at < run.started_at:
        found.problem(run.id, "completed_at missing or before started_at")
    for key in KEYS:
        step = steps.get(key)
        if step is None:
            found.problem(run.id, f"no record of step {key}")
        elif step.status in STEP_ACTIVE:
            found.problem(run.id, f"step {key} still {step.status} in an ended run")
        elif step.started_at and step.completed_at and step.completed_at < step.started_at:
            found.problem(run.id, f"step {key} completed before it started")
    for key in (*HEAD, WELCOME, PAUSE, AWAIT):
        if key in steps and steps[key].status != "completed":
            found.problem(run.id, f"step {key} is {steps[key].status}")
    if KNOWN in steps and steps[KNOWN].branch != "condition_met":
        found.problem(run.id, f"{KNOWN} took branch {steps[KNOWN].branch}")
    wait = steps.get(AWAIT)
    branch = wait.branch if wait else None
    if branch not in BRANCH_STEPS:
        found.problem(run.id, f"wait took branch {branch}")
        return
    taken, others = BRANCH_STEPS[branch]
    for key in taken:
        if steps.get(key) is None or steps[key].status != "completed":
            found.problem(run.id, f"{branch} taken but {key} not completed")
    for key in others:
        if steps.get(key) is None or steps[key].skip_reason != "branch_not_taken":
            found.problem(run.id, f"{branch} taken but {key} not skipped as branch_not_taken")
    _check_race(found, contact, run.id, branch)
    wanted = expected_branch(contact)
    if wanted is not None and branch != wanted:
        found.problem(run.id, f"{contact.plan} contact took {branch}, expected {wanted}")
        if wanted == "event_received":
            found.lost += 1  # the receipt this contact paid for was never sent
    for key in SENDS:
        should_send = key == WELCOME or branch == "event_received"
        _check_email(
            found, run.id, key, steps.get(key), outbox.get((run.id, key)), copies, should_send
        )


def _check_effects(
    found: Findings,
    run: Run,
    steps: dict[str, RunStep],
    person: ContactRow,
    members: set[tuple[str, uuid.UUID]],
) -> None:
    """What the run's instant steps did to its contact: each exactly what its branch says."""
    wait = steps.get(AWAIT)
    branch = wait.branch if wait is not None else None
    if run.status not in RUN_TERMINAL or branch not in EFFECTS:
        return  # reported by _check_run
    first_name, stage, paying = EFFECTS[branch]
    found_stage = (person.properties or {}).get("stage")
    if (person.first_name, found_stage) != (first_name, stage):
        found.problem(
            run.id,
            f"contact is {person.first_name!r} at stage {found_stage!r} after {branch}, "
            f"expected {first_name!r} at {stage!r}",
        )
    if (MEMBERS, person.id) not in members:
        found.problem(run.id, f"contact not in segment {MEMBERS}")
    if ((PAYING, person.id) in members) != paying:
        found.problem(run.id, f"contact {'not ' if paying else ''}in segment {PAYING}")


def _stuck(found: Findings, run: Run, steps: dict[str, RunStep], said: str) -> bool:
    """Whether the run never ended: lost, its steps still in hand named."""
    if run.status in RUN_TERMINAL:
        return False
    found.lost += 1
    active = sorted(f"{k}={s.status}" for k, s in steps.items() if s.status in STEP_ACTIVE)
    found.problem(run.id, f"{said} {run.status} ({', '.join(active)})")
    return True


def _check_stopped_run(
    found: Findings,
    run: Run,
    steps: dict[str, RunStep],
    row: OutboxEmail | None,
    copies: Counter[str | None],
) -> None:
    """A run of the automation stopped with `cancel_runs` while it ran: cancelled, before its
    delay ended; its email sent once if its step completed (a send in a worker's hands when the
    stop came finishes), else at most once (its worker died after the send, and the step was
    then seen cancelled), never under two ids (`_check_deliveries`)."""
    if _stuck(found, run, steps, "stopped automation's run stuck"):
        return
    if run.status != "cancelled":
        found.problem(run.id, f"stopped automation's run ended {run.status}, not cancelled")
    for key, step in steps.items():
        if step.status in STEP_ACTIVE:
            found.problem(run.id, f"step {key} still {step.status} in a cancelled run")
    after = steps.get(TIP_AFTER)
    if after is not None and after.status == "completed":
        found.problem(run.id, f"{TIP_AFTER} ran after the stop")
    tip = steps.get(TIP)
    if tip is not None and tip.status == "completed":
        _check_email(found, run.id, TIP, tip, row, copies, should_send=True)
    elif row is not None:
        found.resends += max(copies.get(str(row.id), 0) - 1, 0)


def _check_race(found: Findings, contact: Contact, run_id: uuid.UUID, branch: str) -> None:
    if contact.plan != "race":
        return
    if contact.race_resumed and contact.race_timed_out:
        found.problem(run_id, "both the event and the timeout won the race")
    if contact.race_resumed is False and contact.race_timed_out is False:
        found.problem(run_id, "neither the event nor the timeout won the race")
    if contact.race_resumed and branch != "event_received":
        found.problem(run_id, f"the event resumed the wait but the run took {branch}")
    if contact.race_timed_out and branch != "timeout":
        found.problem(run_id, f"the timeout claimed the wait but the run took {branch}")


def _check_email(
    found: Findings,
    run_id: uuid.UUID,
    key: str,
    step: RunStep | None,
    row: OutboxEmail | None,
    copies: Counter[str | None],
    should_send: bool,
) -> None:
    if not should_send:
        if row is not None:
            found.problem(run_id, f"outbox row for {key}, which was not on the run's path")
        return
    found.emails += 1
    if row is None:
        found.lost += 1
        found.problem(run_id, f"{key} completed with no outbox row")
        return
    delivered = copies.get(str(row.id), 0)
    if delivered == 0:
        found.lost += 1
        found.problem(run_id, f"{key}: outbox {row.status}, never delivered")
    elif row.status != "sent":
        found.problem(run_id, f"{key}: delivered {delivered}x but its outbox row says {row.status}")
    found.resends += max(delivered - 1, 0)
    if step is not None and (step.output or {}).get("email_id") != str(row.id):
        found.problem(run_id, f"{key}: step output names another email than the outbox row")


def _check_deliveries(
    found: Findings, deliveries: list[Delivery], outbox: dict[tuple[uuid.UUID, str], OutboxEmail]
) -> None:
    """An email under an id we never wrote, or two ids for one (contact, step): silent copies."""
    known = {str(row.id) for row in outbox.values()}
    ids_per_email: dict[tuple[str, str], set[str | None]] = defaultdict(set)
    subjects = set(SUBJECTS.values())
    for delivery in deliveries:
        if delivery.email_id not in known or delivery.subject not in subjects:
            found.duplicated += 1
            found.problems.append(f"email {delivery.email_id} to {delivery.to}: unknown id")
        ids_per_email[(delivery.to, delivery.subject)].add(delivery.email_id)
    for (to, subject), ids in ids_per_email.items():
        if len(ids) > 1:
            found.duplicated += len(ids) - 1
            found.problems.append(f"{to} got {subject!r} under {len(ids)} different ids")
