"""Tables for the hot path's Core statements, and how such a statement is executed.

The executor runs a handful of statements per step. Built once at import with bound parameters
and executed on the session's connection, each costs a quarter of the Python time of the same
statement built per call through the ORM (bench/profile_steps.py measures it); on PostgreSQL,
compiled once more and run on the driver's cursor (engine/store/direct.py), a third less again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Executable,
    Select,
    Table,
    and_,
    bindparam,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from engine.store import direct
from models.tables import (
    Automation,
    Contact,
    Domain,
    Event,
    EventDefinition,
    OutboxEmail,
    Run,
    RunStep,
    Template,
    TemplateVersion,
)

STEPS = cast(Table, RunStep.__table__)
RUNS = cast(Table, Run.__table__)
EVENTS = cast(Table, Event.__table__)
CONTACTS = cast(Table, Contact.__table__)
OUTBOX = cast(Table, OutboxEmail.__table__)
TEMPLATES = cast(Table, Template.__table__)
TEMPLATE_VERSIONS = cast(Table, TemplateVersion.__table__)
DOMAINS = cast(Table, Domain.__table__)
AUTOMATIONS = cast(Table, Automation.__table__)
EVENT_DEFINITIONS = cast(Table, EventDefinition.__table__)

# The step row a statement is about: its run's id as `rid`, its key as `key`.
THIS_STEP = and_(STEPS.c.run_id == bindparam("rid"), STEPS.c.step_key == bindparam("key"))


_NO_PARAMS: Mapping[str, Any] = {}


def execute(
    session: Session,
    statement: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> direct.Result:
    """Execute a Core statement in the session's transaction, bypassing the ORM layer: on
    PostgreSQL, compiled once and run on the driver's cursor (engine/store/direct.py), unless
    something listens to the connection's events (`listened`)."""
    connection = session.connection()
    if (params is None or isinstance(params, Mapping)) and not listened(connection):
        given = params or _NO_PARAMS
        found = direct.prepare(statement, connection.dialect, given)
        if found is not None:
            return found.run(connection, given)
    return connection.execute(statement, params)


def driver_rows(session: Session, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a statement in the driver's own SQL (`%(name)s` parameters), run in the
    session's transaction: what `exec_driver_sql` returns, as the driver returns them.

    `exec_driver_sql` wraps every execution in a result whose column metadata it builds anew
    from the cursor's description (a driver statement has no compiled form to keep it on):
    a sixth of an ingestion's Python time for its two statements, there to be thrown away, since
    the rows are read as tuples. This runs the statement through the connection's own
    `_cursor_execute`, which is SQLAlchemy's path for the statements its dialects run on a
    cursor themselves: the cursor events fire (statement counts, tracing), and a driver error
    comes out as SQLAlchemy's (IntegrityError...), a lost connection invalidated on the way
    (`retry_on_disconnect` relies on it). For statements that return rows. Through
    `exec_driver_sql` while something listens to the connection's events (`listened`).
    """
    connection = session.connection()
    if listened(connection):
        return cast(list[tuple[Any, ...]], connection.exec_driver_sql(sql, params).all())
    cursor = connection.connection.cursor()
    try:
        connection._cursor_execute(cursor, sql, params)  # private, but see above
        return cast(list[tuple[Any, ...]], cursor.fetchall())
    finally:
        cursor.close()


def listened(connection: Connection) -> bool:
    """Whether a listener of the connection's statement events is registered (a tracer, an
    error reporter, a statement count): it then gets SQLAlchemy's whole execution, which the
    driver's cursor path shortens. That path gives the cursor events no execution context
    (`context=None`, which SQLAlchemy allows) and skips `before_execute` and `after_execute`;
    OpenTelemetry's and Sentry's SQLAlchemy integrations keep their span on the context. An
    engine that was never listened to answers at the first test."""
    if not (connection._has_events or connection.engine._has_events):
        return False
    dispatch = connection.dispatch
    return bool(
        dispatch.before_cursor_execute
        or dispatch.after_cursor_execute
        or dispatch.before_execute
        or dispatch.after_execute
    )


def one_of(column: ColumnElement[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN (...)` over values fixed when the statement is built.

    `column.in_(a_list)` binds one "expanding" parameter, which SQLAlchemy renders into the
    statement's text again at every execution (a regular expression over the whole SQL); a
    parameter per value is rendered once, with the statement.
    """
    return column.in_([literal(value, column.type) for value in sorted(values)])


@dataclass(frozen=True)
class Carried:
    """A write that a later statement of the same transaction may carry as a data-modifying
    CTE (`cte`, a row per row it changed) on PostgreSQL, else runs alone (`statement`)."""

    statement: Executable
    cte: CTE
    params: dict[str, Any]

    def run(self, session: Session) -> None:
        """Write it now, alone."""
        execute(session, self.statement, self.params)


def locked_first(rows: Select[Any], name: str) -> CTE:
    """`rows`, selected FOR UPDATE in their ORDER BY, as a CTE that a statement evaluates once
    before its own rows when it names it in `after_locking`: a lock order kept inside one
    statement, no round trip more. MATERIALIZED: inlined, the locks would follow the plan."""
    return rows.cte(name).prefix_with("MATERIALIZED")


def after_locking(locked: CTE) -> ColumnElement[bool]:
    """A condition always true, uncorrelated, so evaluated once (a one-time filter) before
    anything it guards is looked for: `locked`'s rows are locked first."""
    return select(func.count()).select_from(locked).scalar_subquery() >= 0
