"""send_email: a delivery in three phases. The outbox row is written in the claim transaction
(engine/steps/email_message.py), the transport is called with no transaction open, and the
result is recorded after: a crash in between is recovered by re-running the step, which finds
the row and sends with the same email id."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from engine.addresses import MAX_SENDER, check_mailbox
from engine.errors import InvalidInput, StepFailure, TransientStepFailure
from engine.headers import check_header_text
from engine.outcomes import Completed, Failed, Outcome, Retry
from engine.progress import StepRef
from engine.runtime import Runtime
from engine.step_configs import only_keys, required_text, uuid_text
from engine.step_types import DEFAULT_ONLY, Delivery, StepTypeSpec
from engine.steps.email_message import (
    PreparedEmail,
    abandon_email,
    deliver,
    prepare_email,
    reads_on_claim,
)
from engine.store import attempts as attempt_store
from engine.store import outbox as outbox_store
from engine.store.core import Carried
from engine.templates import UNSUBSCRIBE_VARIABLE
from engine.variables import validate_value
from models.enums import OutboxStatus, StepType

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_REPLY_TO = 50


def check_send_email(config: dict[str, Any], at: str) -> dict[str, Any]:
    keys = {"template", "template_id", "variables", "from", "subject", "reply_to"}
    only_keys(config, keys, at, "send_email config")
    result = dict(config)
    # Legacy shapes (template_id, variables beside the template) are stored in the canonical one,
    # template: {id | alias, variables}, which is what the executor reads.
    if "template_id" in result:
        if "template" in result:
            raise InvalidInput('"template" or "template_id", not both', field=f"{at}.template_id")
        result["template"] = {
            "id": uuid_text(result.pop("template_id"), f"{at}.template_id", "template_id")
        }
    else:
        result["template"] = _template(result.get("template"), f"{at}.template")
    if "variables" in result:
        if "variables" in result["template"]:
            raise InvalidInput(
                "variables given twice, inside and beside template", field=f"{at}.variables"
            )
        result["template"]["variables"] = _variables(result.pop("variables"), f"{at}.variables")
    if "from" in result:
        check_mailbox(result["from"], field=f"{at}.from", label="from")
        if len(result["from"]) > MAX_SENDER:
            raise InvalidInput(
                f"`from` holds at most {MAX_SENDER} characters, as a template's does;"
                f" got {len(result['from'])}",
                field=f"{at}.from",
            )
    if "subject" in result:
        subject = required_text(result["subject"], f"{at}.subject", "subject")
        check_header_text(subject, f"{at}.subject", label="subject")
    if "reply_to" in result:
        _check_reply_to(result["reply_to"], f"{at}.reply_to")
    return result


def _template(value: object, at: str) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value.keys() & {"id", "alias"}) != 1:
        raise InvalidInput('template needs exactly one of "id" or "alias"', field=at)
    only_keys(value, {"id", "alias", "variables"}, at, "template")
    if "id" in value:
        result: dict[str, Any] = {"id": uuid_text(value["id"], f"{at}.id", "template id")}
    else:
        result = {"alias": required_text(value["alias"], f"{at}.alias", "template alias")}
    if "variables" in value:
        result["variables"] = _variables(value["variables"], f"{at}.variables")
    return result


def _variables(value: object, at: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput("variables must be an object", field=at)
    for name, item in value.items():
        if not isinstance(name, str) or not _VARIABLE_NAME.fullmatch(name):
            raise InvalidInput(
                f"variable name {name!r} must match {_VARIABLE_NAME.pattern}", field=f"{at}.{name}"
            )
        if name == UNSUBSCRIBE_VARIABLE:
            raise InvalidInput(
                f"variable name {name} is reserved: the send fills it with the contact's"
                " unsubscribe link",
                field=f"{at}.{name}",
            )
        validate_value(item, field=f"{at}.{name}")
    return value


def _check_reply_to(value: object, at: str) -> None:
    """One sender-shaped address, or a list of them; an empty string means none."""
    if isinstance(value, str):
        if value:
            check_mailbox(value, field=at, label="reply_to")
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput("reply_to must be a string or a list of strings", field=at)
    if len(value) > MAX_REPLY_TO:
        raise InvalidInput(f"reply_to holds at most {MAX_REPLY_TO} addresses", field=at)
    for index, item in enumerate(value):
        check_mailbox(item, field=f"{at}[{index}]", label=f"reply_to[{index}]")


def record_send(
    session: Session,
    rt: Runtime,
    ref: StepRef,
    prepared: PreparedEmail,
    result: object,
    owned: bool,
    now: dt.datetime,
) -> tuple[Outcome | None, Carried | None]:
    """Mark the outbox row with the send's result; the step's outcome, None if not `owned`.

    A sent email's mark is left to the caller (Delivery.record), which has it carried by
    the statement that finishes the step on PostgreSQL: one round trip fewer.
    """
    email_id = uuid.UUID(prepared.message.email_id)
    if isinstance(result, str):
        sent = outbox_store.mark_sent(email_id, now=now, provider_message_id=result)
        if not owned:
            sent.run(session)  # it went out, whoever holds the step now: the outbox says so
            return None, None
        return Completed(output=prepared.output), sent
    if not owned:
        return None, None
    assert isinstance(result, StepFailure)
    permanent = not isinstance(result, TransientStepFailure)
    status = OutboxStatus.FAILED if permanent else OutboxStatus.SENDING
    outbox_store.record_failed(session, email_id, status=status, error=result.message)
    failures = attempt_store.count_failed_attempt(session, ref.run_id, ref.step_key)
    return _failure_outcome(rt, result, failures, now, prepared), None


def _failure_outcome(
    rt: Runtime, failure: StepFailure, failures: int, now: dt.datetime, prepared: PreparedEmail
) -> Outcome:
    """After the step's `failures`-th failed try: fail it, or try again later."""
    if not isinstance(failure, TransientStepFailure):
        return Failed(failure.message, failure.code, output=prepared.output)
    retry_at = rt.retry_policy.next_attempt_at(failures, now)
    if retry_at is None:
        message = f"{failure.message} (gave up after {failures} attempts)"
        return Failed(message, failure.code, output=prepared.output)
    return Retry(due_at=retry_at, message=failure.message, code=failure.code)


def _summary(config: Mapping[str, Any]) -> str:
    template = config.get("template") or {}
    return "template " + str(template.get("alias") or template.get("id", ""))[:13]


SPEC = StepTypeSpec(
    name=StepType.SEND_EMAIL,
    check_config=check_send_email,
    delivery=Delivery(
        prepare=prepare_email, deliver=deliver, record=record_send, abandon=abandon_email
    ),
    connection_types=DEFAULT_ONLY,
    label="send email",
    instant=False,
    summary=_summary,
    reads_on_claim=reads_on_claim,
)
