"""A step's first read made by its claim's statement (StepTypeSpec.reads_on_claim).

A send_email step reached by a message that names its run's version reads its outbox row,
template and sender domain in its claim's statement on PostgreSQL: one round trip fewer. A
message naming another version, or one that does not exist, or none, has the step read after
its claim, as before. The same email, or the same failure, whichever way it was read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from engine.db import transaction
from engine.dispatch import Dispatch
from engine.runtime import Runtime
from models.enums import TemplateStatus
from models.tables import AutomationVersion
from tasks.dispatcher import VERSION_HEADER
from tests.integration.factories import (
    chain,
    make_automation,
    make_domain,
    make_template,
    send_email_step,
    unique_email,
)
from tests.integration.harness import Stack
from tests.integration.test_carried_writes import rt, run_through
from tests.integration.test_inline_steps import TRIGGER

pytestmark = pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
__all__ = ["rt"]  # the fixture: a runtime in this process that runs instant steps inline

Named = Callable[[Dispatch], uuid.UUID | None]


def postgres(rt: Runtime) -> bool:
    return bool(rt.sessions.kw["bind"].dialect.name == "postgresql")


def template_reads(statements: list[str]) -> list[str]:
    return [sql for sql in statements if "FROM templates" in sql or "JOIN templates" in sql]


def its_own(step: Dispatch) -> uuid.UUID | None:
    return step.version_id


def naming(version: uuid.UUID | None) -> Named:
    return lambda step: version


def version_of(rt: Runtime, automation_id: uuid.UUID) -> uuid.UUID:
    with transaction(rt.sessions) as session:
        found = session.scalars(
            select(AutomationVersion.id).where(AutomationVersion.automation_id == automation_id)
        ).one()
        return found


def test_a_send_reads_on_its_claim_when_its_message_names_the_runs_version(
    rt_stack: Stack, rt: Runtime
) -> None:
    make_domain(rt_stack)
    make_automation(
        rt_stack,
        [TRIGGER, send_email_step("mail", make_template(rt_stack))],
        chain("start", "mail"),
    )
    named, unnamed = unique_email("named"), unique_email("unnamed")
    run_named, with_version = run_through(rt, named, its_own)
    run_unnamed, without = run_through(rt, unnamed, naming(None))

    for run_id, address in ((run_named, named), (run_unnamed, unnamed)):
        assert rt_stack.run(run_id).status == "completed"
        (message,) = rt_stack.sink.to(address)
        assert message["Subject"] == "Welcome, there!"
        (email,) = rt_stack.outbox(run_id)
        assert email.status == "sent" and email.attempts == 1
    if postgres(rt):
        (read,) = template_reads(with_version)
        assert read.startswith("WITH claimed AS (UPDATE run_steps"), read
        (alone,) = template_reads(without)
        assert not alone.startswith("WITH claimed"), alone
        assert len(with_version) == len(without) - 1
    else:
        assert len(with_version) == len(without)


def test_a_message_naming_another_version_has_the_step_read_after_its_claim(
    rt_stack: Stack, rt: Runtime
) -> None:
    """Another automation's version, whose step of the same key sends another template, and a
    version that does not exist: the run's own template is sent."""
    make_domain(rt_stack)
    own = make_template(rt_stack, subject="Own")
    other = make_template(rt_stack, subject="Other")
    make_automation(rt_stack, [TRIGGER, send_email_step("mail", own)], chain("start", "mail"))
    elsewhere = make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "other.event"}},
            send_email_step("mail", other),
        ],
        chain("start", "mail"),
    )
    other_version = version_of(rt, elsewhere)
    # The claim reads for the version named where it exists, and the step reads again.
    for version, reads_made in ((other_version, 2), (uuid.uuid4(), 1)):
        address = unique_email("misnamed")
        run_id, statements = run_through(rt, address, naming(version))

        assert rt_stack.run(run_id).status == "completed"
        (message,) = rt_stack.sink.to(address)
        assert message["Subject"] == "Own"
        if postgres(rt):
            assert len(template_reads(statements)) == reads_made, statements


@pytest.mark.parametrize("broken", ["draft", "unverified"])
def test_a_failure_read_on_the_claim_names_its_cause(
    rt_stack: Stack, rt: Runtime, broken: str
) -> None:
    make_domain(rt_stack, verified=broken != "unverified")
    status = TemplateStatus.DRAFT if broken == "draft" else TemplateStatus.PUBLISHED
    template = make_template(rt_stack, status=status)
    make_automation(rt_stack, [TRIGGER, send_email_step("mail", template)], chain("start", "mail"))
    address = unique_email("broken")
    run_id, statements = run_through(rt, address, its_own)

    assert rt_stack.run(run_id).status == "failed"
    step = rt_stack.steps(run_id)["mail"]
    code = "template_not_published" if broken == "draft" else "domain_not_verified"
    assert step.status == "failed" and step.error is not None, step.error
    assert step.error["code"] == code, step.error
    assert rt_stack.sink.to(address) == []
    if postgres(rt):
        (read,) = template_reads(statements)
        assert read.startswith("WITH claimed AS (UPDATE run_steps"), read


def test_a_step_task_hands_the_version_its_message_names_to_the_executor(
    rt_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header as Celery's worker puts it in the task's request (merged with its own);
    one that is not an id is no version, and the step runs all the same."""
    import tasks.app

    given: list[uuid.UUID | None] = []

    def noting(*args: Any, version_id: uuid.UUID | None = None, **kwargs: Any) -> list[Any]:
        given.append(version_id)
        return []

    monkeypatch.setattr(tasks.app, "execute_step", noting)
    task = rt_stack.app.tasks["automations.steps.send_email"]
    version = uuid.uuid4()
    for header in (str(version), "not an id", None):
        task.push_request(**({VERSION_HEADER: header} if header is not None else {}))
        try:
            task.run(run_id=str(uuid.uuid4()), step_key="mail")
        finally:
            task.pop_request()
    assert given == [version, None, None]
