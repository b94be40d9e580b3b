"""Migrations are the schema: from nothing or from any revision with data, they give exactly the
models' schema, lose no row, take turns, and fail whole or migration by migration."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import False_

from bench.dashboard_data import insert_history
from engine.db import create_db_engine, create_session_factory, transaction
from engine.store import health, heartbeats
from engine.store.rollup_rebuild import differences, rebuild
from engine.sweeper_health import HEARTBEAT
from migrations import LockPolicy, UpgradeFailed, alembic_config, current, head, upgrade
from models.tables import Base
from tests.conftest import scratch_postgres
from tests.integration.harness import ROOT
from tests.integration.legacy_data import seed, snapshot
from tests.patience import patience
from tests.rollup_recount import recount, rollup

# Every revision but the head, oldest first: a new migration is tested from each of them.
EARLIER = [
    script.revision
    for script in reversed(list(ScriptDirectory.from_config(alembic_config("")).walk_revisions()))
][:-1]


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    with scratch_postgres("migrations") as url:
        yield url


@pytest.fixture(params=["postgres", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend a deployment upgrades."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'automations.sqlite3'}"
        return
    with scratch_postgres("migrations") as url:
        yield url


def schema_differences(url: str) -> list[object]:
    db_engine = create_db_engine(url)
    try:
        with db_engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        db_engine.dispose()


def reflected_schema(url: str) -> dict[str, dict[str, object]]:
    """The schema as the database reports it, what alembic's comparison leaves out included:
    partial indexes' predicates, foreign keys' ON DELETE, check constraints, server defaults."""
    db_engine = create_db_engine(url)
    try:
        found: dict[str, dict[str, object]] = {}
        reflected = inspect(db_engine)
        for table in sorted(set(reflected.get_table_names()) - {"alembic_version"}):
            indexes = [
                {
                    **index,
                    "dialect_options": {
                        k: str(v) for k, v in index.get("dialect_options", {}).items()
                    },
                }
                for index in reflected.get_indexes(table)
            ]
            found[table] = {
                "columns": sorted(
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in reflected.get_columns(table)
                ),
                "primary_key": reflected.get_pk_constraint(table),
                "indexes": sorted(indexes, key=lambda index: str(index["name"])),
                "unique": sorted(reflected.get_unique_constraints(table), key=str),
                "foreign_keys": sorted(reflected.get_foreign_keys(table), key=str),
                "checks": sorted(reflected.get_check_constraints(table), key=str),
            }
        return found
    finally:
        db_engine.dispose()


def create_from_the_models(url: str) -> None:
    """create_all in a process of its own: once SQLAlchemy has emitted a foreign key as an
    ALTER (PostgreSQL, for the automations <-> versions cycle), it leaves it out of a later
    CREATE TABLE in the same process, and SQLite has no ALTER to add it."""
    code = "import sys; from engine.db import *; create_schema(create_db_engine(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, url], cwd=ROOT, check=True, timeout=60)


def test_migrations_build_the_schema_the_models_create(empty_database: str, tmp_path: Path) -> None:
    """The test stacks create their schema from the models and stamp it head: the two ways must
    give one schema, down to what alembic's comparison does not look at."""
    upgrade(empty_database)
    migrated = reflected_schema(empty_database)
    if empty_database.startswith("sqlite"):
        modelled_url = f"sqlite:///{tmp_path / 'modelled.sqlite3'}"
        create_from_the_models(modelled_url)
        assert reflected_schema(modelled_url) == migrated
        return
    with scratch_postgres("modelled") as modelled_url:
        create_from_the_models(modelled_url)
        assert reflected_schema(modelled_url) == migrated


def test_upgrade_empty_postgres_to_head_matches_the_models(empty_postgres: str) -> None:
    assert current(empty_postgres) is None
    upgrade(empty_postgres)
    assert current(empty_postgres) == head()
    assert schema_differences(empty_postgres) == []


def test_downgrade_to_base_and_up_again(empty_database: str) -> None:
    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "base")
    upgrade(empty_database)
    assert schema_differences(empty_database) == []


def test_a_downgrade_keeps_the_rows_of_the_tables_it_keeps(empty_database: str) -> None:
    """Down to 0001, what the later revisions added goes, and nothing else: on SQLite the
    copies of runs and run_steps used to cascade to their steps, outbox and attempts."""
    upgrade(empty_database)
    db_engine = create_db_engine(empty_database)
    try:
        with db_engine.begin() as conn:
            seed(conn)
        with db_engine.connect() as conn:
            before = snapshot(conn)
        command.downgrade(alembic_config(empty_database), "0001")
        with db_engine.connect() as conn:
            after = snapshot(conn)
    finally:
        db_engine.dispose()
    assert set(before) - set(after) == {
        "bulk_operations",
        "bulk_items",
        "step_attempts",
        "dashboard_sessions",
        "template_versions",
        "heartbeats",
        "gone_positions",
    }
    for table, rows in after.items():
        assert rows == [{column: row[column] for column in rows[0]} for row in before[table]], table


def test_the_upgrade_starts_the_wait_for_the_sweepers_first_tick(empty_database: str) -> None:
    """0011 makes the sweeper's heartbeat row, not yet stamped: GET /health/sweeper counts the
    wait for a first tick from the upgrade, so a beat never started is not `waiting` forever."""
    upgrade(empty_database)
    db_engine = create_db_engine(empty_database)
    try:
        with transaction(create_session_factory(db_engine)) as session:
            found = heartbeats.last(session, HEARTBEAT)
            now = health.server_now(session) if db_engine.dialect.name == "postgresql" else None
    finally:
        db_engine.dispose()
    assert found is not None and found.beat_at is None
    now = now or dt.datetime.now(dt.UTC)
    assert dt.timedelta(0) <= now - found.created_at < dt.timedelta(minutes=1)


def test_upgrade_empty_sqlite_to_head_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    upgrade(url)
    assert schema_differences(url) == []


def test_the_rollup_migration_backfills_a_recount(empty_postgres: str) -> None:
    """Runs and steps written before 0005 (every outcome, retried and replayed runs, over 30
    days): once upgraded, the rollup holds exactly what a recount of them finds."""
    command.upgrade(alembic_config(empty_postgres), "0004")
    db_engine = create_db_engine(empty_postgres)
    try:
        now = dt.datetime.now(dt.UTC)
        insert_history(db_engine, 3000, now, contacts=200)
        with db_engine.begin() as conn:
            conn.execute(text("UPDATE runs SET retries = 2 WHERE status = 'failed'"))
            conn.execute(
                text(
                    "UPDATE runs SET replay_of = (SELECT id FROM runs r ORDER BY created_at "
                    "LIMIT 1) WHERE id IN (SELECT id FROM runs ORDER BY id LIMIT 7)"
                )
            )
        upgrade(empty_postgres)
        assert current(empty_postgres) == head()
        with transaction(create_session_factory(db_engine)) as session:
            kept, truth = rollup(session), recount(session)
        assert sum(n for k, n in truth["runs"].items() if k[2] == "completed") > 2000
        assert kept == truth
    finally:
        db_engine.dispose()


def _server_default(table: str, column: str) -> object:
    """What the models say a row written before `column` existed holds in it."""
    default = Base.metadata.tables[table].c[column].server_default
    if default is None:
        return None
    arg = default.arg  # type: ignore[attr-defined]
    if isinstance(arg, False_):
        return False
    return int(str(arg.text))


# New columns a migration fills from the rows it finds, checked on their own below.
_BACKFILLED = {("templates", "current_version_id")}


def _check_template_versions(conn: Connection, before: list[dict[str, object]]) -> None:
    """0009: each template published before it sends a version 1 holding its content, and a
    draft has an unpublished version."""
    tables = Base.metadata.tables
    versions = {
        row.template_id: row._asdict()
        for row in conn.execute(select(tables["template_versions"])).all()
    }
    templates = {row.id: row._asdict() for row in conn.execute(select(tables["templates"])).all()}
    for old in before:
        template = templates[old["id"]]
        if old["status"] != "published":
            assert template["current_version_id"] is None
            assert template["has_unpublished_versions"] in (True, 1)
            continue
        version = versions[old["id"]]
        assert template["current_version_id"] == version["id"]
        assert version["number"] == 1
        content = ("subject", "sender", "html", "text_body")
        assert {name: version[name] for name in content} == {name: old[name] for name in content}
        assert not template["has_unpublished_versions"]


@pytest.mark.parametrize("start", EARLIER)
def test_upgrading_a_deployment_with_data_loses_nothing(empty_database: str, start: str) -> None:
    """Runs in every status, steps waiting, delayed, pending and running, the outbox, keys,
    sessions and bulk operations, written at an earlier revision: after the upgrade to head
    every row holds what it held, the new columns their defaults, and the rollup a recount.
    On SQLite, batch mode's copy of `runs` (0003) used to empty run_steps and outbox: its
    DROP TABLE cascaded to them."""
    command.upgrade(alembic_config(empty_database), start)
    db_engine = create_db_engine(empty_database)
    try:
        with db_engine.begin() as conn:
            seed(conn)
            if db_engine.dialect.has_table(conn, "run_rollups"):
                rebuild(conn)  # the rollup as the engine kept it since
        with db_engine.connect() as conn:
            before = snapshot(conn)
        upgrade(empty_database)
        assert current(empty_database) == head()
        with db_engine.connect() as conn:
            after = snapshot(conn)
            assert differences(conn) == []
    finally:
        db_engine.dispose()
    assert sum(len(rows) for rows in before.values()) >= 20
    for table, rows in before.items():
        assert len(after[table]) == len(rows), table
        for old, new in zip(rows, after[table], strict=True):
            assert {column: new[column] for column in old} == old, table
            added = {
                column: new[column]
                for column in new
                if column not in old and (table, column) not in _BACKFILLED
            }
            assert added == {column: _server_default(table, column) for column in added}, table
    if "current_version_id" not in before["templates"][0]:
        with db_engine.connect() as conn:
            _check_template_versions(conn, before["templates"])
    assert schema_differences(empty_database) == []
    assert reflected_schema(empty_database) == fresh_schema(empty_database)


_FRESH: dict[str, dict[str, dict[str, object]]] = {}


def fresh_schema(like: str) -> dict[str, dict[str, object]]:
    """The reflected schema of an empty database of the same backend upgraded to head."""
    backend = like.split(":", 1)[0]
    if backend not in _FRESH:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                url = f"sqlite:///{Path(folder) / 'fresh.sqlite3'}"
                upgrade(url)
                _FRESH[backend] = reflected_schema(url)
        else:
            with scratch_postgres("fresh") as url:
                upgrade(url)
                _FRESH[backend] = reflected_schema(url)
    return _FRESH[backend]


def _waiting_backends(conn: Connection, database: str) -> int:
    conn.rollback()  # pg_stat_activity is read once per transaction
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = :name AND wait_event_type = 'Lock'"
            ),
            {"name": database},
        ).scalar_one()
    )


def test_two_upgrades_at_once_take_turns(empty_postgres: str) -> None:
    """A second `db upgrade` (or replicas migrating as they start) while one runs: both read
    the old revision, and the second failed on "column already exists". Here both are held
    where the migration writes its revision by a reader's lock until both are under way."""
    command.upgrade(alembic_config(empty_postgres), EARLIER[-1])
    code = "import sys; from migrations import upgrade; upgrade(sys.argv[1])"
    db_engine = create_db_engine(empty_postgres)
    reader = db_engine.connect()
    try:
        # Whatever the last migration changes, it ends by writing its revision: held there.
        reader.execute(text("LOCK TABLE alembic_version IN EXCLUSIVE MODE"))
        upgrades = [
            subprocess.Popen(
                [sys.executable, "-c", code, empty_postgres],
                cwd=ROOT,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        database = str(db_engine.url.database)
        with db_engine.connect() as watcher:
            deadline = time.monotonic() + patience(30)
            while _waiting_backends(watcher, database) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _waiting_backends(watcher, database) == 2
        reader.rollback()
        errors = [process.communicate(timeout=60)[1] for process in upgrades]
        assert [process.returncode for process in upgrades] == [0, 0], errors
    finally:
        reader.close()
        db_engine.dispose()
    assert current(empty_postgres) == head()


def test_a_migration_gives_up_on_a_table_in_use_and_tries_again(empty_postgres: str) -> None:
    """An ALTER TABLE waits for every transaction using the table, and every query after it
    waits behind it: an idle transaction on `outbox` would have stopped every send for as long
    as it lasted. A statement gives up after the lock timeout (its migration undone, those
    before it kept) and the upgrade tries again; it fails in one line once its tries are spent,
    and goes through once the table is free."""
    command.upgrade(alembic_config(empty_postgres), "0009")
    db_engine = create_db_engine(empty_postgres)
    holder = db_engine.connect()
    try:
        holder.execute(text("SELECT count(*) FROM outbox"))  # 0010 alters outbox
        short = LockPolicy(timeout=0.2, attempts=2, pause=0.05)
        with pytest.raises(UpgradeFailed, match=r"stayed in use.*0\.2 s for its lock 2 times"):
            upgrade(empty_postgres, locks=short)
        assert current(empty_postgres) == "0009"

        release = threading.Timer(0.5, holder.rollback)
        release.start()
        upgrade(empty_postgres, locks=LockPolicy(timeout=0.2, attempts=50, pause=0.05))
        release.join()
        assert current(empty_postgres) == head()
    finally:
        holder.close()
        db_engine.dispose()


def test_a_failed_upgrade_keeps_what_each_backend_commits(empty_database: str) -> None:
    """0004 fails (its table made by hand). PostgreSQL commits migration by migration, so
    0003 stays, and its locks were not held through the later ones (a backfill over the
    runs it altered kept them from every reader); on SQLite the upgrade is one transaction,
    undone whole."""
    command.upgrade(alembic_config(empty_database), "0002")
    db_engine = create_db_engine(empty_database)
    try:
        with db_engine.begin() as conn:
            seed(conn)
            conn.execute(text("CREATE TABLE dashboard_sessions (id_hash VARCHAR(64))"))
    finally:
        db_engine.dispose()
    with pytest.raises(DBAPIError, match="dashboard_sessions"):
        upgrade(empty_database)
    kept = "0003" if empty_database.startswith("postgresql") else "0002"
    assert current(empty_database) == kept
    upgrade_with = create_db_engine(empty_database)
    try:
        with upgrade_with.begin() as conn:
            conn.execute(text("DROP TABLE dashboard_sessions"))
    finally:
        upgrade_with.dispose()
    upgrade(empty_database)
    assert current(empty_database) == head()
    assert schema_differences(empty_database) == []


def test_a_sqlite_upgrade_that_leaves_an_orphan_is_undone(tmp_path: Path) -> None:
    """Foreign keys are off while batch mode copies tables, so the upgrade checks them before
    it commits: a step whose run is gone (written with the keys off) stops it, and nothing of
    it stays."""
    url = f"sqlite:///{tmp_path / 'orphan.sqlite3'}"
    command.upgrade(alembic_config(url), "0002")
    with closing(sqlite3.connect(tmp_path / "orphan.sqlite3")) as conn:
        conn.execute(
            "INSERT INTO run_steps (run_id, step_key, step_type, status, attempt, created_at) "
            "VALUES ('0123456789abcdef0123456789abcdef', 'a', 'delay', 'waiting', 1, "
            "'2026-12-01 00:00:00.000000')"
        )
        conn.commit()
    with pytest.raises(UpgradeFailed, match="run_steps row 1 -> runs"):
        upgrade(url)
    assert current(url) == "0002"
