"""A simulation's SQL: rows copied out of the real database, and reads of its throwaway store."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, or_, select, text, update
from sqlalchemy.orm import Session

from engine.store.core import (
    AUTOMATIONS,
    CONTACTS,
    STEPS,
    TEMPLATE_VERSIONS,
    TEMPLATES,
    execute,
    one_of,
)
from models.enums import STEP_CLAIMABLE, AutomationStatus
from models.ids import new_id
from models.tables import AutomationVersion

VERSIONS = cast(Table, AutomationVersion.__table__)


def read_only(session: Session) -> None:
    """Make the session's transaction refuse every write (PostgreSQL; SQLite has no such mode).

    Must come first in the transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TRANSACTION READ ONLY"))


def rows_where(
    session: Session, table: Table, column: str, values: Collection[Any]
) -> list[dict[str, Any]]:
    """The rows whose `column` is one of `values`, as column -> value."""
    if not values:
        return []
    stmt = select(table).where(table.c[column].in_(sorted(values, key=str)))
    return [dict(row._mapping) for row in execute(session, stmt)]


_CURRENT_GRAPH = (
    select(VERSIONS.c.graph)
    .join(AUTOMATIONS, AUTOMATIONS.c.current_version_id == VERSIONS.c.id)
    .where(AUTOMATIONS.c.id == bindparam("automation_id"), AUTOMATIONS.c.deleted_at.is_(None))
)


def current_graph(session: Session, automation_id: uuid.UUID) -> dict[str, Any] | None:
    """The graph of the automation's current version; None if it does not exist (or is deleted)."""
    graph: dict[str, Any] | None = execute(
        session, _CURRENT_GRAPH, {"automation_id": automation_id}
    ).scalar()
    return graph


def templates_named(
    session: Session, ids: Collection[str], aliases: Collection[str]
) -> list[dict[str, Any]]:
    """The templates with these ids (text that is not a UUID names none) or these aliases."""
    keys = []
    for text_id in ids:
        try:
            keys.append(uuid.UUID(text_id))
        except ValueError:
            continue
    if not keys and not aliases:
        return []
    stmt = select(TEMPLATES).where(
        or_(TEMPLATES.c.id.in_(keys), TEMPLATES.c.alias.in_(sorted(aliases)))
    )
    return [dict(row._mapping) for row in execute(session, stmt)]


def insert_automation(
    session: Session, *, graph: dict[str, Any], trigger_event: str, now: dt.datetime
) -> uuid.UUID:
    """An enabled automation whose first version is `graph` (already validated); its id."""
    automation_id, version_id = new_id(), new_id()
    execute(
        session,
        insert(AUTOMATIONS).values(
            id=automation_id,
            name="simulation",
            status=AutomationStatus.ENABLED,
            trigger_event=trigger_event,
            created_at=now,
            updated_at=now,
        ),
    )
    execute(
        session,
        insert(VERSIONS).values(
            id=version_id, automation_id=automation_id, number=1, graph=graph, created_at=now
        ),
    )
    execute(
        session,
        update(AUTOMATIONS)
        .where(AUTOMATIONS.c.id == automation_id)
        .values(current_version_id=version_id),
    )
    return automation_id


def rekey_contact(
    session: Session, contact_id: uuid.UUID, *, new_id: uuid.UUID, created_at: dt.datetime
) -> None:
    """Give a contact another id and creation time (nothing refers to it yet)."""
    execute(
        session,
        update(CONTACTS)
        .where(CONTACTS.c.id == contact_id)
        .values(id=new_id, created_at=created_at),
    )


def all_rows(session: Session, table: Table) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in execute(session, select(table))]


def current_template_versions(
    session: Session, templates: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The versions these templates send."""
    keys = [row["current_version_id"] for row in templates if row["current_version_id"]]
    if not keys:
        return []
    stmt = select(TEMPLATE_VERSIONS).where(TEMPLATE_VERSIONS.c.id.in_(keys))
    return [dict(row._mapping) for row in execute(session, stmt)]


def insert_templates(
    session: Session, templates: Sequence[dict[str, Any]], versions: Sequence[dict[str, Any]]
) -> None:
    """Templates and their versions, which point at each other: the templates first without
    their pointer, then the versions, then the pointers."""
    insert_rows(session, TEMPLATES, [{**row, "current_version_id": None} for row in templates])
    insert_rows(session, TEMPLATE_VERSIONS, versions)
    for row in templates:
        if row["current_version_id"] is not None:
            execute(
                session,
                update(TEMPLATES)
                .where(TEMPLATES.c.id == row["id"])
                .values(current_version_id=row["current_version_id"]),
            )


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        execute(session, insert(table), list(rows))


_PARKED = (
    select(STEPS.c.step_key, STEPS.c.step_type, STEPS.c.due_at)
    .where(
        STEPS.c.run_id == bindparam("run_id"),
        one_of(STEPS.c.status, STEP_CLAIMABLE),
        STEPS.c.due_at.is_not(None),
    )
    .order_by(STEPS.c.due_at, STEPS.c.created_at, STEPS.c.step_key)
)


def next_due(
    session: Session, run_id: uuid.UUID
) -> tuple[dt.datetime | None, list[tuple[str, str]]]:
    """The earliest due time among the run's steps that wait for one, and those steps as
    (key, type); (None, []) when no step of the run waits for a time."""
    rows = execute(session, _PARKED, {"run_id": run_id}).all()
    if not rows:
        return None, []
    earliest: dt.datetime = rows[0].due_at
    return earliest, [(row.step_key, row.step_type) for row in rows if row.due_at == earliest]
