"""Contacts: their rows, locks, changes and deletion (segments are in segments.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, cast

from sqlalchemy import (
    CTE,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from engine.addresses import AddressError, canonical_email
from engine.store.core import (
    CONTACTS,
    RUNS,
    Carried,
    after_locking,
    driver_rows,
    execute,
    locked_first,
)
from engine.store.dialect import insert_or_ignore
from engine.store.paging import Page, paginate, remember_gone
from models.ids import UUID7_SQL, new_id
from models.tables import Contact, SegmentMembership


@dataclass(frozen=True)
class ContactRow:
    """A contact as a step reads it (a snapshot, not an ORM object)."""

    id: uuid.UUID
    email: str
    first_name: str | None
    last_name: str | None
    unsubscribed: bool
    properties: dict[str, Any] | None


def normalize_email(email: str) -> str:
    """The stored form of an address (see engine.addresses); a value that is not one, trimmed
    and lower-cased, so that a lookup by it simply finds nothing."""
    try:
        return canonical_email(email)
    except AddressError:
        return email.strip().lower()


_LOCK_CONTACT = (
    select(
        CONTACTS.c.id,
        CONTACTS.c.email,
        CONTACTS.c.first_name,
        CONTACTS.c.last_name,
        CONTACTS.c.unsubscribed,
        CONTACTS.c.properties,
    )
    .where(CONTACTS.c.id == bindparam("contact_id"))
    .with_for_update()
)


def lock_contact(session: Session, contact_id: uuid.UUID) -> ContactRow | None:
    """The contact, locked for this transaction: ingestion and steps serialize on this lock."""
    row = execute(session, _LOCK_CONTACT, {"contact_id": contact_id}).first()
    return ContactRow(*tuple(row)) if row is not None else None


# How a read locks the row it finds: `update` to change or delete it; `key_share` to write a
# row that refers to it (a membership), which only its deletion must wait for.
RowLock = Literal["update", "key_share"]


def locked(stmt: Select[Any], lock: RowLock | None) -> Select[Any]:
    """The read with its row lock (`RowLock`), or as it is."""
    if lock == "update":
        return stmt.with_for_update()
    if lock == "key_share":
        return stmt.with_for_update(read=True, key_share=True)
    return stmt


def get_contact(
    session: Session,
    contact_id: uuid.UUID,
    *,
    for_update: bool = False,
    lock: RowLock | None = None,
) -> Contact | None:
    stmt = select(Contact).where(Contact.id == contact_id)
    return session.scalars(locked(stmt, "update" if for_update else lock)).first()


def get_contact_by_email(
    session: Session, email: str, *, for_update: bool = False, lock: RowLock | None = None
) -> Contact | None:
    stmt = select(Contact).where(Contact.email == normalize_email(email))
    return session.scalars(locked(stmt, "update" if for_update else lock)).first()


_LOCK_MANY = (
    select(*_LOCK_CONTACT.selected_columns)
    .where(
        or_(
            CONTACTS.c.email.in_(bindparam("emails", expanding=True)),
            CONTACTS.c.id.in_(bindparam("ids", expanding=True)),
        )
    )
    # One order for every transaction that locks several contacts, so two never deadlock.
    .order_by(CONTACTS.c.id)
    .with_for_update()
)


def ensure_contacts(
    session: Session, *, emails: Iterable[str], ids: Iterable[uuid.UUID], now: dt.datetime
) -> list[ContactRow]:
    """The contacts with these (normalized) emails, created if absent, and those with these
    ids if they exist; all locked for this transaction."""
    addresses = sorted(set(emails))  # inserted in one order too: unique-key waits cannot cycle
    if session.get_bind().dialect.name == "postgresql":
        return _ensure_contacts_postgres(session, addresses, sorted(set(ids)), now)
    if addresses:
        new: dict[str, Any] = {
            "first_name": None,
            "last_name": None,
            "unsubscribed": False,
            "properties": {},
        }
        rows = [
            {"id": new_id(), "email": a, **new, "created_at": now, "updated_at": now}
            for a in addresses
        ]
        # A new contact is locked by its insert: only those that existed are selected after.
        returning = tuple(column.name for column in _LOCK_CONTACT.selected_columns)
        created = execute(session, insert_or_ignore(session, CONTACTS, *returning), rows)
        found = [ContactRow(*tuple(row)) for row in created]
    else:
        found = []
    existing = sorted(set(addresses) - {row.email for row in found})
    wanted = sorted(set(ids) - {row.id for row in found})
    if existing or wanted:
        params = {"emails": existing, "ids": wanted}
        found += [ContactRow(*tuple(row)) for row in execute(session, _LOCK_MANY, params)]
    return found


# The same two statements with the values as arrays: their text does not grow with the number
# of contacts, so psycopg prepares each once per connection; a VALUES list per contact was
# rendered and parsed anew for each group (24 KB of SQL for 100 new contacts). A new contact's
# id is drawn by PostgreSQL (a version 7 UUID, as models.ids makes) for the rows inserted only,
# not in Python for every address of the group.
CONTACT_COLUMNS = "id, email, first_name, last_name, unsubscribed, properties"
CREATE_CONTACTS = f"""
INSERT INTO contacts ({CONTACT_COLUMNS}, created_at, updated_at)
SELECT {UUID7_SQL}, email, NULL, NULL, false, '{{}}'::jsonb, %(now)s, %(now)s
FROM unnest(%(emails)s::text[]) WITH ORDINALITY AS new(email, n)
ORDER BY n
ON CONFLICT DO NOTHING
RETURNING {CONTACT_COLUMNS}
"""  # noqa: S608 - composed of constants
LOCK_CONTACTS = f"""
SELECT {CONTACT_COLUMNS} FROM contacts
WHERE email = ANY(%(emails)s::text[]) OR id = ANY(%(ids)s::uuid[])
ORDER BY id
FOR UPDATE
"""  # noqa: S608 - composed of constants


def _ensure_contacts_postgres(
    session: Session, addresses: list[str], ids: list[uuid.UUID], now: dt.datetime
) -> list[ContactRow]:
    found: list[ContactRow] = []
    if addresses:
        params = {"emails": addresses, "now": now}
        # A new contact is locked by its insert: only those that existed are selected after.
        found = [ContactRow(*row) for row in driver_rows(session, CREATE_CONTACTS, params)]
    return found + lock_missing(session, addresses, ids, found, now)


# How many times an address whose contact was deleted under an ingestion is created anew: a
# deletion has to fall between the insert and the lock each time to need another.
RECREATE_TRIES = 3


def lock_missing(
    session: Session,
    addresses: list[str],
    ids: list[uuid.UUID],
    found: list[ContactRow],
    now: dt.datetime,
) -> list[ContactRow]:
    """Those of these contacts not in `found`, locked (those that exist), on PostgreSQL.

    An address whose insert met its existing contact, deleted before the lock could take it,
    is created anew: as any unknown address is (a contact asked for by id stays missing).
    """
    missing: list[ContactRow] = []
    existing = sorted(set(addresses) - {row.email for row in found})
    wanted = sorted(set(ids) - {row.id for row in found})
    for _ in range(RECREATE_TRIES):
        if not existing and not wanted:
            break
        params = {"emails": existing, "ids": wanted}
        locked = [ContactRow(*row) for row in driver_rows(session, LOCK_CONTACTS, params)]
        missing += locked
        gone = sorted(set(existing) - {row.email for row in locked})
        if not gone:
            break
        params = {"emails": gone, "now": now}
        created = [ContactRow(*row) for row in driver_rows(session, CREATE_CONTACTS, params)]
        missing += created
        existing = sorted(set(gone) - {row.email for row in created})
        wanted = []
    return missing


def create_contact(
    session: Session,
    *,
    email: str,
    now: dt.datetime,
    first_name: str | None = None,
    last_name: str | None = None,
    unsubscribed: bool = False,
    properties: dict[str, Any] | None = None,
) -> Contact:
    contact = Contact(
        id=new_id(),
        email=normalize_email(email),
        first_name=first_name,
        last_name=last_name,
        unsubscribed=unsubscribed,
        properties=properties or {},
        created_at=now,
        updated_at=now,
    )
    session.add(contact)
    session.flush()
    return contact


def update_contact(
    session: Session, contact: Contact, changes: dict[str, Any], now: dt.datetime
) -> None:
    """Apply field changes; `properties` is merged key by key, not replaced."""
    for name, value in merged_changes(contact.properties, changes).items():
        setattr(contact, name, value)
    contact.updated_at = now
    session.flush()


def update_contact_row(
    session: Session, contact: ContactRow, changes: dict[str, Any], now: dt.datetime
) -> None:
    """`update_contact` for a locked ContactRow, in one statement."""
    values = {**merged_changes(contact.properties, changes), "updated_at": now}
    execute(session, update(CONTACTS).where(CONTACTS.c.id == contact.id).values(**values))


def change_contact(
    session: Session, contact_id: uuid.UUID, changes: dict[str, Any], now: dt.datetime
) -> bool:
    """`update_contact` by id, the contact locked meanwhile; False if it is gone.

    On PostgreSQL one statement: the UPDATE locks the row and merges `properties` into the
    row's current ones (jsonb ||, key by key at the top level, as `merged_changes`).
    """
    if session.get_bind().dialect.name != "postgresql":
        locked = lock_contact(session, contact_id)
        if locked is not None:
            update_contact_row(session, locked, changes, now)
        return locked is not None
    changed = execute(
        session, _change_contact(frozenset(changes)), _change_params(contact_id, changes, now)
    )
    return bool(changed.rowcount == 1)


def carry_change(
    session: Session, contact_id: uuid.UUID, changes: dict[str, Any], now: dt.datetime
) -> Carried | None:
    """`change_contact` for a contact this transaction has locked already (a step's claim
    locks it first), as a write that the statement recording the step's end carries
    (core.Carried): one round trip fewer. On another database, the change is made now, and
    None returned."""
    if session.get_bind().dialect.name != "postgresql":
        changed = change_contact(session, contact_id, changes, now)
        assert changed, "the contact is locked by this transaction"
        return None
    names = frozenset(changes)
    return Carried(
        _change_contact(names), _contact_changed(names), _change_params(contact_id, changes, now)
    )


# The change's parameters are named apart from the columns and from a carrying statement's own.
_SET = "contact_set_"


def _change_params(
    contact_id: uuid.UUID, changes: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    params = {_SET + name: value for name, value in changes.items()}
    params.update(contact_id=contact_id, contact_now=now)
    return params


@cache
def _change_contact(names: frozenset[str]) -> Update:
    """PostgreSQL: UPDATE contacts SET these fields (properties merged), built once per set."""
    values: dict[str, Any] = {
        name: bindparam(_SET + name, type_=CONTACTS.c[name].type) for name in names
    }
    if "properties" in names:
        none = literal_column("'{}'::jsonb", type_=postgresql.JSONB)
        current = func.coalesce(CONTACTS.c.properties, none)
        changed = bindparam(_SET + "properties", type_=postgresql.JSONB)
        values["properties"] = current.op("||")(changed)
    return (
        update(CONTACTS)
        .where(CONTACTS.c.id == bindparam("contact_id"))
        .values(**values, updated_at=bindparam("contact_now", type_=CONTACTS.c.updated_at.type))
    )


@cache
def _contact_changed(names: frozenset[str]) -> CTE:
    return _change_contact(names).returning(literal_column("1")).cte("contact_changed")


def merged_changes(properties: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes with `properties` merged into the current ones key by key."""
    if "properties" not in changes:
        return changes
    return {**changes, "properties": {**(properties or {}), **changes["properties"]}}


def lock_runs_of(session: Session, contact_id: uuid.UUID) -> None:
    """Lock the contact's runs, in id order (the contact locked already), before it is deleted.

    Deleting the contact writes each of its runs (their contact_id becomes NULL): taken here,
    in one order, after the step rows its waits have (`wake_waits_of_contact`), as a step
    takes its step row, then its run.
    """
    stmt = select(RUNS.c.id).where(RUNS.c.contact_id == contact_id).order_by(RUNS.c.id)
    session.execute(stmt.with_for_update())


def lock_for_deletion(session: Session, contact_id: uuid.UUID) -> bool:
    """Lock the contact to delete it, first of all its rows; False if it is gone."""
    stmt = select(CONTACTS.c.id).where(CONTACTS.c.id == contact_id)
    return execute(session, stmt.with_for_update()).first() is not None


MEMBERSHIPS = cast(Table, SegmentMembership.__table__)
# The contact's memberships, locked in segment order, for the one-time filter of its deletion,
# whose cascade then deletes them. The cascade would lock them in its plan's order (the
# table's), as a segment's deletion locks its own (a small segment's by contact id, a big
# one's in the table's order): two segments and two of their members deleted at once could
# each hold a membership the next one waits for. Now a cycle of waits would have to come
# back to a segment it left, which a contact's deletion only leaves for a later one.
_MEMBERSHIPS_LOCKED = locked_first(
    select(MEMBERSHIPS.c.segment_id)
    .where(MEMBERSHIPS.c.contact_id == bindparam("contact_id"))
    .order_by(MEMBERSHIPS.c.segment_id)
    .with_for_update(),
    "memberships_locked",
)
_DELETE_CONTACT = (
    delete(CONTACTS)
    .where(
        CONTACTS.c.id == bindparam("contact_id"),
        after_locking(_MEMBERSHIPS_LOCKED),
    )
    .returning(CONTACTS.c.id, CONTACTS.c.created_at)
)


def delete_contact(session: Session, contact_id: uuid.UUID, now: dt.datetime) -> None:
    """Delete the contact and its memberships; its place in lists is kept (remember_gone)."""
    gone = session.execute(_DELETE_CONTACT, {"contact_id": contact_id})
    remember_gone(session, Contact.__tablename__, [(row[0], row[1]) for row in gone], now)


def contact_view(contact: Contact | ContactRow) -> dict[str, Any]:
    """The contact as conditions and templates see it: custom properties also at top level."""
    properties = dict(contact.properties or {})
    return {
        **properties,
        "id": str(contact.id),
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "unsubscribed": contact.unsubscribed,
        "properties": properties,
    }


def list_contacts(
    session: Session,
    *,
    limit: int,
    after: uuid.UUID | None = None,
    before: uuid.UUID | None = None,
    segment_id: uuid.UUID | None = None,
) -> Page[Contact]:
    """One page of contacts, newest first; only the segment's members when one is given."""
    stmt = select(Contact)
    if segment_id is not None:
        stmt = stmt.join(SegmentMembership, SegmentMembership.contact_id == Contact.id).where(
            SegmentMembership.segment_id == segment_id
        )
    return paginate(
        session,
        stmt,
        created=Contact.created_at,
        ident=Contact.id,
        limit=limit,
        after=after,
        before=before,
    )
