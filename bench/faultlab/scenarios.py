"""The fault scenarios, and one run of a scenario from an empty database to its findings."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.faultlab import injectors
from bench.faultlab.check import Findings, check
from bench.faultlab.driver import Driver
from bench.faultlab.lab import INLINE_CHECKPOINTS, SEND_CHECKPOINTS, Lab
from bench.faultlab.load import Contact, define_automation, plan_contacts
from bench.faultlab.report import Result
from bench.faultlab.sinks import Delivery, ResendStub
from engine.db import transaction

Make = Callable[[Lab, random.Random], injectors.Injector]


@dataclass(frozen=True)
class Scenario:
    name: str
    injectors: tuple[Make, ...] = ()
    transport: str = "smtp"
    chaos: bool = False  # every step message twice, batches reversed, stale copies
    race_share: float = 0.1  # contacts whose event arrives at the instant the wait times out
    # Worker n kills itself once at the nth of these checkpoints; the first worker to reach
    # the only one, if one.
    checkpoints: tuple[str, ...] = ()
    # A second automation on the signup event, stopped with `cancel_runs` mid-signups.
    stop_drip: bool = False
    # Signups enqueued as `automations.events.send` messages, as a producer on the broker does,
    # instead of ingested by the driver: each message is its event's only copy.
    broker_signups: bool = False


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("baseline"),
        Scenario("sigkill", (injectors.sigkill,), checkpoints=INLINE_CHECKPOINTS),
        Scenario("broker-events", (injectors.sigkill,), broker_signups=True),
        Scenario("pause", (injectors.pause,)),
        Scenario("redis-flushall", (injectors.flushall,)),
        Scenario("redis-restart", (injectors.redis_restart,)),
        Scenario("pg-terminate", (injectors.pg_cut,)),
        Scenario("duplicate-reorder", chaos=True),
        Scenario("event-at-timeout", race_share=0.6),
        Scenario(
            "resend-http", (injectors.sigkill,), transport="resend", checkpoints=SEND_CHECKPOINTS
        ),
        Scenario(
            "stop-cancel",
            (injectors.sigkill,),
            checkpoints=("cancel.before_commit",),
            stop_drip=True,
        ),
        Scenario(
            "mixed",
            (
                injectors.sigkill,
                injectors.pause,
                injectors.flushall,
                injectors.redis_restart,
                injectors.pg_cut,
            ),
            chaos=True,
            race_share=0.2,
            stop_drip=True,
        ),
    )
}
# The CI short form: every fault on its own; the baseline and `mixed` are for the long form.
SHORT_FORM = [name for name in SCENARIOS if name not in ("baseline", "mixed")]


@dataclass
class Outcome:
    """What a scenario did, before it is checked."""

    scenario: Scenario
    contacts: list[Contact]
    driver: Driver
    active: list[injectors.Injector]
    deliveries: list[Delivery]
    seconds: float
    notes: list[str] = field(default_factory=list)


def drive(
    lab: Lab,
    scenario: Scenario,
    *,
    runs: int,
    seed: int,
    patience: float,
    max_faults: int | None = None,
    tempo: float = 1.0,
) -> Outcome:
    """Drive `runs` runs to their end under the scenario's faults (at most `max_faults` each)."""
    started = time.monotonic()
    rng = random.Random(seed)
    lab.reset(transport=scenario.transport, chaos=scenario.chaos, checkpoints=scenario.checkpoints)
    lab.resend.seed = seed
    drip = define_automation(lab.runtime, lab.clock.now(), drip=scenario.stop_drip)
    contacts = plan_contacts(rng, runs, race_share=scenario.race_share)
    driver = Driver(lab, contacts, rng, patience, drip=drip, broker_signups=scenario.broker_signups)
    lab.start_sweeper()
    active = [make(lab, rng) for make in scenario.injectors]
    for injector in active:
        injector.limit = max_faults
        # A short load gets its faults closer together (tempo 2: twice as often).
        injector.low, injector.high = injector.low / tempo, injector.high / tempo
        injector.start()
    try:
        driver.signups()
        driver.payments()
        driver.races_at_timeout()
        driver.skip(dt.timedelta(days=1, seconds=10))
        time.sleep(rng.uniform(0.5, 1.5))  # the timeouts run under the faults for a while
    finally:
        for injector in active:
            injector.stop()
        lab.set_chaos(False)
        if lab.redis.process is None:  # a restart that failed mid-fault
            lab.redis.start()
        lab.pool.start()  # likewise a worker slot
    try:
        driver.wait("every run to end", lambda: driver.unfinished() == 0)
    finally:
        lab.stop_sweeper()
    time.sleep(0.3)  # a send still on the wire lands before we count
    resend = scenario.transport == "resend"
    deliveries = lab.resend.deliveries() if resend else lab.sink.deliveries()
    seconds = time.monotonic() - started
    return Outcome(scenario, contacts, driver, active, deliveries, seconds, _notes(lab, driver))


def evaluate(lab: Lab, outcome: Outcome) -> Result:
    """Check the records and the sinks; one row of the report."""
    scenario, driver = outcome.scenario, outcome.driver
    with transaction(lab.runtime.sessions) as session:
        found = check(session, outcome.contacts, outcome.deliveries)
    notes = list(outcome.notes)
    injected = sum(i.count for i in outcome.active) + sum(lab.checkpoint_kills().values())
    for injector in outcome.active:
        notes[:0] = [f"{what} {n}" for what, n in sorted(injector.done.items())]
    if scenario.chaos:
        injected += lab.chaos_messages()
    if scenario.race_share >= 0.5 or scenario.name == "mixed":
        injected += driver.races
    if scenario.transport == "resend":
        injected += sum(1 for r in lab.resend.requests if r.status in (409, 500))
        notes.append(_resend_notes(lab.resend, found))
    return Result(
        fault=scenario.name,
        runs=found.runs,
        emails=found.emails,
        injected=injected,
        lost=found.lost,
        duplicated=found.duplicated,
        resends=found.resends,
        seconds=outcome.seconds,
        notes=", ".join(notes),
        problems=found.problems,
        stalls=list(driver.stalls),
    )


def run_scenario(
    lab: Lab,
    scenario: Scenario,
    *,
    runs: int,
    seed: int,
    patience: float = 60,
    max_faults: int | None = None,
    tempo: float = 1.0,
) -> Result:
    """Drive and check one scenario."""
    outcome = drive(
        lab,
        scenario,
        runs=runs,
        seed=seed,
        patience=patience,
        max_faults=max_faults,
        tempo=tempo,
    )
    return evaluate(lab, outcome)


def _notes(lab: Lab, driver: Driver) -> list[str]:
    notes = [f"{point} kill {n}" for point, n in lab.checkpoint_kills().items()]
    if lab.chaos_messages():
        notes.append(f"extra messages {lab.chaos_messages()}")
    won = Counter(
        "event" if c.race_resumed else "timeout" if c.race_timed_out else "unknown"
        for c in driver.contacts
        if c.plan == "race"
    )
    notes.append(f"races {driver.races} (event won {won['event']}, timeout {won['timeout']})")
    if lab.publish_errors:
        notes.append(f"publishes failed {lab.publish_errors}")
    notes.append(f"queue peak {lab.queue_peak}")
    inflight, unacked = lab.given_back()
    if inflight or unacked:
        notes.append(f"given back from dead workers {unacked} (+{inflight} in flight)")
    if lab.revived:
        notes.append(f"workers restarted by supervisor {lab.revived}")
    waits = sorted(driver.waited.items(), key=lambda item: -item[1])[:3]
    notes.append("longest waits: " + ", ".join(f"{what} {s:.0f} s" for what, s in waits))
    return notes


def _resend_notes(stub: ResendStub, found: Findings) -> str:
    """Every request for one email must carry one key; replays are the provider's dedup."""
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    for request in stub.requests:
        keys[(request.to, request.subject)].add(request.key)
    for (to, subject), seen in keys.items():
        if len(seen) > 1:
            found.duplicated += len(seen) - 1
            found.problems.append(f"{to} {subject!r} sent under keys {sorted(seen)}")
    status = Counter(r.status for r in stub.requests)
    most = max((len(s) for s in keys.values()), default=0)
    return (
        f"HTTP requests {len(stub.requests)}: 500 {status[500]}, 409 {status[409]}, "
        f"replayed by key {status[200]}, accepted {status[0]}, keys per email {most}"
    )
