"""An event a producer enqueued must not vanish when the database drops the worker mid-ingest.

`automations.events.send` carries the event itself: unlike a step message, nothing in the
database can bring it back. Here the worker's ingestion blocks on a lock we hold, we terminate
its PostgreSQL session (what a database restart does to every session), then let go.
"""

from __future__ import annotations

import time

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from bench.faultlab.lab import Lab
from bench.faultlab.load import SIGNUP, define_automation
from engine.db import transaction
from models.tables import Contact, Run
from tests.patience import patience

ADDRESS = "producer@example.test"


def blocked_sessions(lab: Lab) -> list[int]:
    """Sessions of our database waiting on a lock."""
    # Read on another connection: inside the locking transaction the view is a frozen snapshot.
    with lab.cutter.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :name "
                "AND wait_event_type = 'Lock'"
            ),
            {"name": lab.cutter.name},
        )
        return [pid for (pid,) in rows]


def runs_for(lab: Lab, address: str) -> int:
    with transaction(lab.runtime.sessions) as session:
        query = select(func.count()).select_from(Run).join(Contact, Contact.id == Run.contact_id)
        return int(session.scalar(query.where(Contact.email == address)) or 0)


def test_event_enqueued_by_a_producer_survives_a_cut_database_connection(lab: Lab) -> None:
    lab.reset(transport=lab.transport, chaos=False)
    define_automation(lab.runtime, lab.clock.now())
    locker = create_engine(lab.url, poolclass=NullPool)
    try:
        with locker.connect() as conn:
            conn.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
            lab.app.send_task(
                "automations.events.send",
                kwargs={"event": SIGNUP, "email": ADDRESS},
                queue="automations",
            )
            deadline = time.monotonic() + patience(20)
            while not (blocked := blocked_sessions(lab)):
                assert time.monotonic() < deadline, "the worker never reached the events table"
                time.sleep(0.05)
            for pid in blocked:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            conn.rollback()  # lets go of the lock
    finally:
        locker.dispose()

    # A retried or requeued message would be ingested within moments.
    deadline = time.monotonic() + patience(4)
    while runs_for(lab, ADDRESS) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runs_for(lab, ADDRESS) == 1, "the producer's event was dropped"
