"""Segment deletions and contact deletions at once: the membership rows they delete, on
real PostgreSQL.

A segment's deletion deletes its memberships, a contact's deletion deletes the contact's (its
foreign key's cascade). Each locks its rows one at a time, in the order of the plan that finds
them: a small segment's through the primary key (by contact id), a big segment's and a
contact's in the order of the table's pages. Two segments and two of their members deleted at
once can then each hold a membership that the next one waits for, round a cycle, unless each
contact's deletion takes its memberships in segment order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from engine import contacts
from engine.db import transaction
from tests.integration.harness import Stack
from tests.integration.test_contact_races import T0
from tests.patience import patience

pytestmark = pytest.mark.parametrize("stack", ["postgres"], indirect=True)

# Members of the big segment besides the two contacts deleted: enough for PostgreSQL to read
# the big segment's memberships from the table and the small one's through its index.
BIG_SEGMENT = 2000


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


class Holder:
    """A transaction of its own that holds one membership's row until it is released."""

    def __init__(self, stack: Stack, segment_id: uuid.UUID, contact_id: uuid.UUID) -> None:
        self.session = stack.runtime.sessions()
        self.session.begin()
        self.session.execute(
            text(
                "SELECT 1 FROM segment_memberships"
                " WHERE segment_id = :s AND contact_id = :c FOR UPDATE"
            ),
            {"s": segment_id, "c": contact_id},
        )
        self.pid = backend_pid(self.session)

    def release(self) -> None:
        self.session.commit()
        self.session.close()


def backend_pid(session: Session) -> int:
    return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


class Deletion:
    """A deletion in its own transaction on a thread; `pid` is its backend's."""

    def __init__(
        self, stack: Stack, pool: ThreadPoolExecutor, delete: Callable[[Session], Any]
    ) -> None:
        self.stack = stack
        self.pid: int | None = None
        self.future: Future[None] = pool.submit(self._run, delete)
        wait_for(lambda: self.blocked_by() != [], "the deletion never waited for a membership")

    def _run(self, delete: Callable[[Session], Any]) -> None:
        with transaction(self.stack.runtime.sessions) as session:
            self.pid = backend_pid(session)
            delete(session)

    def blocked_by(self) -> list[int]:
        """The backends this deletion waits for (none if it does not wait)."""
        if self.pid is None:
            return []
        with self.stack.runtime.sessions() as session:
            found = session.execute(text("SELECT pg_blocking_pids(:pid)"), {"pid": self.pid})
            return list(found.scalar_one())


def settled(deletions: list[Deletion], released: int) -> bool:
    """Whether each deletion has ended or waits again, for another than the one released."""
    for deletion in deletions:
        blockers = deletion.blocked_by()
        if not deletion.future.done() and (blockers == [] or released in blockers):
            return False
    return True


def wait_for(condition: Callable[[], bool], message: str) -> None:
    deadline = time.monotonic() + patience(10)
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def memberships(stack: Stack, big: uuid.UUID, rows: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """These memberships, in this order in the table, and the big segment's other members."""
    with transaction(stack.runtime.sessions) as session:
        for segment_id, contact_id in rows:
            session.execute(
                text("INSERT INTO segment_memberships VALUES (:s, :c, :now)"),
                {"s": segment_id, "c": contact_id, "now": T0},
            )
        session.execute(
            text(
                "INSERT INTO contacts (id, email, unsubscribed, properties, created_at,"
                " updated_at) SELECT gen_random_uuid(), 'member-' || n || '@example.com', false,"
                " '{}', :now, :now FROM generate_series(1, :count) AS n"
            ),
            {"now": T0, "count": BIG_SEGMENT},
        )
        session.execute(
            text(
                "INSERT INTO segment_memberships SELECT :big, id, :now FROM contacts"
                " WHERE email LIKE 'member-%'"
            ),
            {"big": big, "now": T0},
        )
    with transaction(stack.runtime.sessions) as session:
        session.execute(text("ANALYZE segment_memberships"))


def scan_of(stack: Stack, segment_id: uuid.UUID) -> str:
    """How PostgreSQL finds a segment's memberships to delete them."""
    with transaction(stack.runtime.sessions) as session:
        plan = session.execute(
            text("EXPLAIN (FORMAT JSON) DELETE FROM segment_memberships WHERE segment_id = :s"),
            {"s": segment_id},
        ).scalar_one()
    scan = plan[0]["Plan"]["Plans"][0]
    return f"{scan['Node Type']} {scan.get('Index Name', '')}".strip()


def test_two_segments_and_two_of_their_members_deleted_at_once(
    rt_stack: Stack, pool: ThreadPoolExecutor
) -> None:
    """Each deletion is held at each membership it comes to (another transaction holds the
    row), and let go one membership at a time, so that each takes its first before the next
    one comes to it; the order in which they take them decides whether they go round a cycle."""
    with transaction(rt_stack.runtime.sessions) as session:
        small, big = (contacts.create_segment(session, name=n, now=T0).id for n in ("s", "b"))
        limits = rt_stack.runtime.json_limits
        made = [
            contacts.create_contact(session, email=f"{n}@example.com", now=T0, limits=limits).id
            for n in ("ada", "bob")
        ]
    a, b = sorted(made)
    # The table's order, the one a contact's deletion and the big segment's take them in.
    table_order = [(small, b), (big, b), (big, a), (small, a)]
    memberships(rt_stack, big, table_order)
    with transaction(rt_stack.runtime.sessions) as session:
        found = session.execute(
            text(
                "SELECT segment_id, contact_id FROM segment_memberships"
                " WHERE contact_id IN (:a, :b) ORDER BY ctid"
            ),
            {"a": a, "b": b},
        )
        assert [tuple(row) for row in found] == table_order
    assert scan_of(rt_stack, small) == "Index Scan pk_segment_memberships"
    assert scan_of(rt_stack, big) == "Seq Scan"

    holders = [Holder(rt_stack, *row) for row in [(small, a), (small, b), (big, b), (big, a)]]
    deletions = [
        Deletion(rt_stack, pool, lambda s: contacts.delete_segment(s, small, now=T0)),
        Deletion(rt_stack, pool, lambda s: contacts.delete_contact(s, str(b), now=T0)),
        Deletion(rt_stack, pool, lambda s: contacts.delete_segment(s, big, now=T0)),
        Deletion(rt_stack, pool, lambda s: contacts.delete_contact(s, str(a), now=T0)),
    ]
    for holder in holders:
        holder.release()
        wait_for(lambda pid=holder.pid: settled(deletions, pid), "the deletions did not settle")
    for deletion in deletions:
        deletion.future.result(timeout=20)

    with transaction(rt_stack.runtime.sessions) as session:
        left = session.execute(
            text(
                "SELECT (SELECT count(*) FROM segment_memberships),"
                " (SELECT count(*) FROM segments),"
                " (SELECT count(*) FROM contacts WHERE id IN (:a, :b))"
            ),
            {"a": a, "b": b},
        )
        assert tuple(left.one()) == (0, 0, 0)
