"""The store's statements run on the driver's cursor (engine/store/direct.py) give what
`Connection.execute` gives: the same rows, column names and counts, for every statement the
runs of every step type execute; and only statements that path renders exactly take it."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    bindparam,
    event,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, MultipleResultsFound, NoResultFound
from sqlalchemy.orm import Session

from engine import db, sweeper
from engine.clock import FrozenClock
from engine.db import transaction
from engine.dispatch import Dispatch
from engine.executor import execute_step
from engine.ingest import EventRequest, ingest_event, ingest_events
from engine.runtime import Runtime, create_runtime
from engine.store import core, direct
from engine.store.core import RUNS
from models.types import JSONType, UTCDateTime
from tests.integration.factories import make_contact, unique_email
from tests.integration.harness import Stack
from tests.integration.test_db_pool import backend, terminate
from tests.integration.test_scenarios import make_welcome_series

T0 = dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
SCRATCH = MetaData()
NUMBERS = Table("direct_numbers", SCRATCH, Column("n", Integer, primary_key=True))


@pytest.fixture
def audited(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every direct execution is preceded by the same statement through Core, in a savepoint
    rolled back, and both answers compared; yields the SQL of the statements compared."""
    compared: list[str] = []
    run = direct.Direct.run

    def both(self: direct.Direct, connection: Connection, params: Any) -> direct.Rows:
        savepoint = connection.begin_nested()
        theirs = connection.execute(self.statement, params)
        if theirs.returns_rows:
            expected: tuple[Any, ...] = (tuple(theirs.keys()), [tuple(row) for row in theirs])
        else:
            expected = (None, theirs.rowcount)
        savepoint.rollback()
        ours = run(self, connection, params)
        if self._row is None:
            # Core leaves an INSERT's count unread (-1); ours is the driver's.
            counted = ours.rowcount if expected[1] != -1 else -1
            got: tuple[Any, ...] = (None, counted)
        else:
            got = (self._row._fields, [tuple(row) for row in ours])
        assert got == expected, self._sql
        compared.append(self._sql)
        return ours

    monkeypatch.setattr(direct.Direct, "run", both)
    yield compared


class Swept:
    """The sweeper's messages, kept for `drain` to execute."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def dispatch(self, dispatches: Sequence[Any]) -> None:
        self.sent.extend(d for d in dispatches if isinstance(d, Dispatch))

    def ping(self) -> None:
        return None


def drain(rt: Runtime, clock: FrozenClock, dispatches: list[Dispatch]) -> None:
    """Execute steps in this process as a worker would; when none is left, move the clock to
    the next timer (a delay, a wait's end) and let the sweeper send what became due."""
    queue, swept = deque(dispatches), Swept()
    for _ in range(100):
        while queue:
            following = queue.popleft()
            if following.countdown:
                clock.advance(dt.timedelta(seconds=following.countdown + 1))
            queue.extend(
                execute_step(rt, following.run_id, following.step_key, following.step_type)
            )
        clock.advance(dt.timedelta(days=1))
        sweeper.tick(rt, swept)
        if not swept.sent:
            return
        queue.extend(swept.sent)
        swept.sent.clear()


@pytest.mark.parametrize("stack", ["postgres"], indirect=True)
def test_every_step_types_statements_give_what_core_gives(
    rt_stack: Stack, audited: list[str]
) -> None:
    make_welcome_series(rt_stack)
    clock = FrozenClock(T0)
    rt = create_runtime(rt_stack.settings, clock=clock)
    try:
        # Twice each way: a statement takes the direct path from its second execution.
        addresses = [unique_email(plan) for plan in ("free", "pro", "free", "pro")]
        for address in addresses:
            make_contact(rt_stack, address, first_name="Ann")
        for address in addresses[:2]:
            with transaction(rt.sessions) as session:
                plan = address.split("-")[0]
                started = ingest_event(
                    session,
                    rt,
                    event="user.created",
                    email=address,
                    payload={"plan": plan},
                    now=clock.now(),
                )
            drain(rt, clock, started.dispatches)
        with transaction(rt.sessions) as session:
            batch = ingest_events(
                session,
                rt,
                [
                    EventRequest("user.created", email=address, payload={"plan": address[:3]})
                    for address in addresses[2:]
                ],
                now=clock.now(),
            )
        drain(rt, clock, [d for ingested in batch for d in ingested.dispatches])
        for address in addresses:  # the free plans' waits resume
            with transaction(rt.sessions) as session:
                resumed = ingest_event(
                    session, rt, event="plan.upgraded", email=address, now=clock.now()
                )
            drain(rt, clock, resumed.dispatches)
    finally:
        rt.sessions.kw["bind"].dispose()

    with transaction(rt_stack.runtime.sessions) as session:
        statuses = session.execute(select(RUNS.c.status)).scalars().all()
    assert statuses == ["completed"] * 4
    assert len(rt_stack.sink.envelopes) >= 4
    # The claims, the finishes, the sends' reads and writes, the contacts' changes.
    assert len(audited) > 40 and len(set(audited)) > 10


def execute_twice(session: Session, statement: Any, params: Any = None) -> Any:
    core.execute(session, statement, params)
    return core.execute(session, statement, params)


@pytest.fixture
def scratch(pooled: Engine) -> Iterator[Session]:
    with Session(pooled) as session, session.begin():
        NUMBERS.create(session.connection())
        core.execute(session, insert(NUMBERS), [{"n": 1}, {"n": 2}, {"n": 3}])
        yield session
        session.rollback()


def test_a_result_reads_as_sqlalchemys(scratch: Session) -> None:
    many = select(NUMBERS.c.n, (NUMBERS.c.n * 10).label("tens")).order_by(NUMBERS.c.n)
    rows = execute_twice(scratch, many)
    assert isinstance(rows, direct.Rows)
    assert [tuple(row) for row in rows] == [(1, 10), (2, 20), (3, 30)]
    first = rows.first()
    assert (first.n, first.tens, first[1], first._mapping) == (1, 10, 10, {"n": 1, "tens": 10})
    assert rows.scalar() == 1 and rows.scalars().all() == [1, 2, 3]
    with pytest.raises(MultipleResultsFound):
        rows.one()
    none = select(NUMBERS.c.n).where(NUMBERS.c.n > bindparam("above"))
    empty = execute_twice(scratch, none, {"above": 9})
    assert (empty.first(), empty.scalar(), empty.one_or_none(), empty.all()) == (None,) * 3 + ([],)
    with pytest.raises(NoResultFound):
        empty.one()
    assert execute_twice(scratch, none, {"above": 2}).scalar_one() == 3


def test_a_key_twice_is_read_by_position_and_the_others_by_name(scratch: Session) -> None:
    """As SQLAlchemy's `Row`: a name twice in a row (a claim's joined rows) is no attribute,
    and a column named as a tuple's method does not hide it."""
    joined = select(
        NUMBERS.c.n, (NUMBERS.c.n + 1).label("n"), NUMBERS.c.n.label("count"), literal(5)
    ).where(NUMBERS.c.n == 1)
    row = execute_twice(scratch, joined).one()
    assert tuple(row) == (1, 2, 1, 5)
    assert row._fields == tuple(scratch.connection().execute(joined).keys())
    assert not hasattr(row, "n") and callable(row.count) and row.count(1) == 2


def test_writes_count_their_rows(scratch: Session) -> None:
    bump = NUMBERS.update().where(NUMBERS.c.n >= bindparam("from")).values(n=NUMBERS.c.n + 10)
    assert core.execute(scratch, bump, {"from": 3}).rowcount == 1  # Core, the first time
    counted = core.execute(scratch, bump, {"from": 2})
    assert isinstance(counted, direct.Rows) and counted.rowcount == 2


def test_types_are_processed_both_ways(scratch: Session) -> None:
    """A UTC datetime's and a JSON document's bind and result processing, as Core does."""
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    both = select(
        bindparam("at", type_=UTCDateTime()).label("at"),
        bindparam("doc", type_=JSONType).label("doc"),
    )
    params = {"at": at, "doc": {"a": [1, None]}}
    theirs = tuple(scratch.connection().execute(both, params).one())
    ours = execute_twice(scratch, both, params).one()
    assert tuple(ours) == theirs == (at, {"a": [1, None]})
    assert ours.at.tzinfo == dt.UTC


def test_only_what_the_direct_path_renders_exactly_takes_it(scratch: Session) -> None:
    dialect = scratch.connection().dialect
    taken = select(NUMBERS.c.n).where(NUMBERS.c.n == bindparam("n"))
    assert direct.prepare(taken, dialect, {"n": 1}) is None  # once: maybe built per call
    assert isinstance(direct.prepare(taken, dialect, {"n": 1}), direct.Direct)
    refused = {
        "an expanding IN": select(NUMBERS.c.n).where(NUMBERS.c.n.in_([1, 2])),
        "execution options": taken.execution_options(stream_results=True),
        "columns learnt from the cursor": text("SELECT 1 AS one"),
        "a Python-side default": insert(RUNS).returning(RUNS.c.id),
    }
    for why, statement in refused.items():
        for _ in range(2):
            assert direct.prepare(statement, dialect, {}) is None, why
    # Many sets of parameters and other drivers keep Core.
    assert isinstance(core.execute(scratch, insert(NUMBERS), [{"n": 7}, {"n": 8}]).rowcount, int)


def test_a_statement_built_per_call_never_fills_the_map(scratch: Session) -> None:
    dialect = scratch.connection().dialect
    for value in range(direct.CAPACITY + 10):
        assert direct.prepare(select(literal(value)), dialect, {}) is None
    assert len(direct._kept) <= direct.CAPACITY and len(direct._seen) <= direct.CAPACITY


def test_a_listener_of_the_statement_events_gets_sqlalchemys_whole_execution(
    scratch: Session, pooled: Engine
) -> None:
    """A tracer keeps its span on the execution context (OpenTelemetry's and Sentry's
    SQLAlchemy integrations do): while one listens, statements take Core, with a context."""
    seen: list[str] = []

    def traced(
        _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, *_: Any
    ) -> None:
        context.span = statement  # fails on the driver's cursor path, whose context is None
        seen.append(statement)

    add = insert(NUMBERS).values(n=bindparam("n"))
    for n in (8, 9):  # the direct path's from the second execution on
        core.execute(scratch, add, {"n": n})
    event.listen(pooled, "before_cursor_execute", traced)
    try:
        listened = core.execute(scratch, add, {"n": 10})
        rows = core.driver_rows(scratch, "SELECT n FROM direct_numbers WHERE n = %(n)s", {"n": 10})
    finally:
        event.remove(pooled, "before_cursor_execute", traced)
    assert not isinstance(listened, direct.Rows) and rows == [(10,)]
    assert len(seen) == 2
    # No listener left: the direct path again, and nothing traced.
    assert isinstance(core.execute(scratch, add, {"n": 11}), direct.Rows)
    assert len(seen) == 2
    with pytest.raises(IntegrityError, match="duplicate key"):
        core.execute(scratch, add, {"n": 11})


def test_a_lost_connection_is_invalidated_as_for_any_statement(
    pooled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What engine/db.py's retry_on_disconnect reads to run the operation once more."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 3600.0)  # handed out untested: the statement fails
    one = select(literal(1).label("one"))
    with Session(pooled) as session, session.begin():
        execute_twice(session, one)
    first = backend(pooled)
    terminate(first)
    with pytest.raises(DBAPIError) as failed, Session(pooled) as session, session.begin():
        assert isinstance(direct.prepare(one, session.connection().dialect, {}), direct.Direct)
        core.execute(session, one)
    assert failed.value.connection_invalidated
    assert backend(pooled) != first
