"""PostgreSQL draws the same ids as models.ids for the rows a statement inserts itself."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import Engine, select, text

from engine.db import transaction
from engine.ingest import EventRequest, ingest_events
from models.ids import UUID7_SQL
from models.tables import Contact, Event, Run
from tests.integration.factories import chain, make_automation, unique_email
from tests.integration.harness import Stack


def _millis(value: uuid.UUID) -> int:
    return value.int >> 80


def test_the_sql_draws_version_7_ids_of_the_statement_time(pooled: Engine) -> None:
    with pooled.connect() as connection:
        before = dt.datetime.now(dt.UTC)
        drawn = connection.execute(text(f"SELECT {UUID7_SQL} FROM generate_series(1, 1000)"))
        ids = [row[0] for row in drawn]
        after = dt.datetime.now(dt.UTC)
    assert len(set(ids)) == len(ids)
    assert {one.version for one in ids} == {7}
    assert {one.variant for one in ids} == {uuid.RFC_4122}
    low, high = (int(moment.timestamp() * 1000) for moment in (before, after))
    assert all(low - 1 <= _millis(one) <= high + 1 for one in ids)


@pytest.mark.parametrize("stack", ["postgres", "sqlite"], indirect=True)
def test_an_ingestion_writes_version_7_ids(rt_stack: Stack) -> None:
    make_automation(
        rt_stack,
        [
            {"key": "start", "type": "trigger", "config": {"event_name": "signed.up"}},
            {"key": "tag", "type": "contact_update", "config": {"first_name": "B"}},
        ],
        chain("start", "tag"),
    )
    rt = rt_stack.runtime
    with transaction(rt.sessions) as session:
        ingest_events(
            session, rt, [EventRequest("signed.up", email=unique_email())], now=rt.clock.now()
        )
    with transaction(rt.sessions) as session:
        for table in (Contact, Event, Run):
            assert {one.version for one in session.scalars(select(table.id))} == {7}, table
