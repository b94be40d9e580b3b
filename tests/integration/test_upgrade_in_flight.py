"""Runs caught by an upgrade: started under the oldest schema, in a delay and in a wait, they
finish under the new one with a real worker, each email sent once, the rollup a recount."""

from __future__ import annotations

import datetime as dt

from alembic import command

from engine.store.rollup_rebuild import differences
from migrations import alembic_config, current, head, upgrade
from tests.integration.factories import (
    chain,
    make_automation,
    make_contact,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack

HOUR = dt.timedelta(hours=1, seconds=1)


def test_runs_in_flight_finish_after_an_upgrade_from_the_first_revision(rt_stack: Stack) -> None:
    make_domain(rt_stack)
    template = make_template(rt_stack)
    steps = [
        {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
        send_email_step("welcome", template),
        {"key": "pause", "type": "delay", "config": {"duration": "1 hour"}},
        {"key": "await", "type": "wait_for_event", "config": {"event_name": "plan.upgraded"}},
        send_email_step("thanks", template),
    ]
    connections = chain("start", "welcome", "pause")
    connections += [
        {"from": "pause", "to": "await"},
        {"from": "await", "to": "thanks", "type": "event_received"},
    ]
    make_automation(rt_stack, steps, connections)
    delayed, waiting = unique_email("delayed"), unique_email("waiting")
    for address in (delayed, waiting):
        make_contact(rt_stack, address, first_name="Ada")
    (waiting_run,) = rt_stack.send("user.created", waiting, {"plan": "free"}).run_ids
    rt_stack.wait_step(waiting_run, "pause", "waiting")
    rt_stack.advance(HOUR)
    rt_stack.wait_step(waiting_run, "await", "waiting")
    (delayed_run,) = rt_stack.send("user.created", delayed, {"plan": "free"}).run_ids
    rt_stack.wait_step(delayed_run, "pause", "waiting")

    url = rt_stack.settings.database_url
    rt_stack.stop_worker()
    try:
        command.downgrade(alembic_config(url), "0001")  # the schema the runs could have met
        upgrade(url)
    finally:
        rt_stack.start_worker()
    assert current(url) == head()

    rt_stack.advance(HOUR)
    for run in (delayed_run, waiting_run):
        rt_stack.wait_step(run, "await", "waiting")
    for address in (delayed, waiting):
        rt_stack.send("plan.upgraded", address)
    for run in (delayed_run, waiting_run):
        assert rt_stack.wait_run(run).status == "completed"
        assert {step.status for step in rt_stack.steps(run).values()} == {"completed"}
        assert [mail.status for mail in rt_stack.outbox(run)] == ["sent", "sent"]
    for address in (delayed, waiting):
        assert len(rt_stack.sink.to(address)) == 2
    with rt_stack.runtime.sessions.kw["bind"].connect() as conn:
        assert differences(conn) == []
