"""Segments and their memberships."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import bindparam, delete, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from engine.store.contacts import MEMBERSHIPS, RowLock, locked
from engine.store.core import Carried
from engine.store.dialect import insert_ignoring_conflicts
from engine.store.paging import Page, paginate, remember_gone
from models.ids import new_id
from models.tables import Segment, SegmentMembership


def create_segment(session: Session, *, name: str, now: dt.datetime) -> Segment:
    segment = Segment(id=new_id(), name=name, created_at=now)
    session.add(segment)
    session.flush()
    return segment


def segment_exists(session: Session, segment_id: uuid.UUID) -> bool:
    """Whether the segment exists, which it does until this transaction ends: a deletion
    under way is waited for (then it does not), a later one waits for this transaction."""
    stmt = select(Segment.id).where(Segment.id == segment_id)
    return session.scalar(locked(stmt, "key_share")) is not None


def add_membership(
    session: Session, segment_id: uuid.UUID, contact_id: uuid.UUID, now: dt.datetime
) -> None:
    session.execute(
        insert_ignoring_conflicts(
            session,
            SegmentMembership.__table__,  # type: ignore[arg-type]
            {"segment_id": segment_id, "contact_id": contact_id, "created_at": now},
        )
    )


def carry_membership(
    session: Session, segment_id: uuid.UUID, contact_id: uuid.UUID, now: dt.datetime
) -> Carried | None:
    """`add_membership` as a write that the statement recording a step's end carries
    (core.Carried); on another database, made now, and None returned."""
    if session.get_bind().dialect.name != "postgresql":
        add_membership(session, segment_id, contact_id, now)
        return None
    params = {
        "membership_segment_id": segment_id,
        "membership_contact_id": contact_id,
        "membership_created_at": now,
    }
    return Carried(_ADD_MEMBERSHIP, _MEMBERSHIP_ADDED, params)


_ADD_MEMBERSHIP = (
    postgresql.insert(MEMBERSHIPS)
    .values(
        segment_id=bindparam("membership_segment_id", type_=MEMBERSHIPS.c.segment_id.type),
        contact_id=bindparam("membership_contact_id", type_=MEMBERSHIPS.c.contact_id.type),
        created_at=bindparam("membership_created_at", type_=MEMBERSHIPS.c.created_at.type),
    )
    .on_conflict_do_nothing()
)
_MEMBERSHIP_ADDED = _ADD_MEMBERSHIP.returning(literal_column("1")).cte("membership_added")


def is_member(session: Session, segment_id: uuid.UUID, contact_id: uuid.UUID) -> bool:
    return (
        session.scalar(
            select(SegmentMembership.contact_id).where(
                SegmentMembership.segment_id == segment_id,
                SegmentMembership.contact_id == contact_id,
            )
        )
        is not None
    )


def get_segment(
    session: Session, segment_id: uuid.UUID, *, lock: RowLock | None = None
) -> Segment | None:
    if lock is None:
        return session.get(Segment, segment_id)
    stmt = locked(select(Segment).where(Segment.id == segment_id), lock)
    return session.scalars(stmt.execution_options(populate_existing=True)).first()


def list_segments(
    session: Session,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    contact_id: uuid.UUID | None = None,
) -> Page[Segment]:
    """One page of segments, newest first; only the contact's segments when one is given."""
    stmt = select(Segment)
    if contact_id is not None:
        stmt = stmt.join(SegmentMembership, SegmentMembership.segment_id == Segment.id).where(
            SegmentMembership.contact_id == contact_id
        )
    return paginate(
        session,
        stmt,
        created=Segment.created_at,
        ident=Segment.id,
        limit=limit,
        after=after,
        before=before,
    )


def rename_segment(session: Session, segment: Segment, name: str) -> None:
    segment.name = name
    session.flush()


def delete_segment(session: Session, segment_id: uuid.UUID, now: dt.datetime) -> None:
    """Delete the segment (locked for update by the caller: a member being added meanwhile
    waits, then finds it gone) and its memberships, not its contacts."""
    session.execute(delete(SegmentMembership).where(SegmentMembership.segment_id == segment_id))
    gone = session.execute(
        delete(Segment).where(Segment.id == segment_id).returning(Segment.id, Segment.created_at)
    )
    remember_gone(session, Segment.__tablename__, [(row[0], row[1]) for row in gone], now)


def remove_membership(session: Session, segment_id: uuid.UUID, contact_id: uuid.UUID) -> bool:
    """Take the contact out of the segment; False when it was not a member."""
    result = session.execute(
        delete(SegmentMembership).where(
            SegmentMembership.segment_id == segment_id,
            SegmentMembership.contact_id == contact_id,
        )
    )
    return bool(getattr(result, "rowcount", 0))
