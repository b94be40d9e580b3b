"""Whether psycopg's pipeline mode makes a two-statement transaction cheaper.

    python -m bench.round_trips [--rounds 1500] [--repeat 3] [--database-url URL]

An ingestion's transaction is BEGIN, two statements (the second needs the first's rows), and
COMMIT: four round trips, since psycopg sends BEGIN alone and waits for it, even in pipeline
mode. On a connection in autocommit mode a pipeline can carry an explicit BEGIN with the first
statement instead (a flush request returns its rows without ending the transaction). Timed on
one connection each, in turns, with two small prepared `INSERT ... RETURNING` statements:

- classic: four round trips, as SQLAlchemy drives psycopg;
- pipelined: BEGIN and the first statement, the second, COMMIT with the Sync (three);
- pipelined, blind commit: COMMIT sent with the second statement, before its rows are read (two;
  what an ingestion cannot do, since it decides after the second statement whether it commits).

Prints wall-clock and CPU ms per transaction. Two tables of its own (`round_trip_*`) are
created in the database if missing and emptied at the end.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

from bench.procs import ensure_database

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1/bench_ingest"
FIRST = "INSERT INTO round_trip_a (id, v) VALUES (%(id)s, %(v)s) RETURNING id"
SECOND = "INSERT INTO round_trip_b (id, a) VALUES (%(id)s, %(a)s) RETURNING id"


def classic(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(FIRST, {"id": uuid.uuid4(), "v": "x"}, prepare=True)
        (first,) = cur.fetchall()
        cur.execute(SECOND, {"id": uuid.uuid4(), "a": first[0]}, prepare=True)
        cur.fetchall()
    conn.commit()


def pipelined(conn: psycopg.Connection) -> None:
    with conn.pipeline(), conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(FIRST, {"id": uuid.uuid4(), "v": "x"}, prepare=True)
        (first,) = cur.fetchall()
        cur.execute(SECOND, {"id": uuid.uuid4(), "a": first[0]}, prepare=True)
        cur.fetchall()
        cur.execute("COMMIT")


def blind_commit(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur, conn.cursor() as ending:
        with conn.pipeline():
            cur.execute("BEGIN")
            cur.execute(FIRST, {"id": uuid.uuid4(), "v": "x"}, prepare=True)
            (first,) = cur.fetchall()
            cur.execute(SECOND, {"id": uuid.uuid4(), "a": first[0]}, prepare=True)
            ending.execute("COMMIT")
        cur.fetchall()


WAYS: dict[str, tuple[bool, Callable[[psycopg.Connection], None]]] = {
    "classic (4 round trips)": (False, classic),
    "pipelined (3)": (True, pipelined),
    "pipelined, blind commit (2)": (True, blind_commit),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--rounds", type=int, default=1500, help="transactions per turn")
    parser.add_argument("--repeat", type=int, default=3, help="turns of each way")
    args = parser.parse_args(argv)
    ensure_database(args.database_url)
    dsn = make_url(args.database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS round_trip_a (id uuid PRIMARY KEY, v text)")
        admin.execute("CREATE TABLE IF NOT EXISTS round_trip_b (id uuid PRIMARY KEY, a uuid)")
    connections = {name: psycopg.connect(dsn, autocommit=auto) for name, (auto, _) in WAYS.items()}
    try:
        for _ in range(args.repeat):
            for name, (_, way) in WAYS.items():
                conn = connections[name]
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(args.rounds):
                    way(conn)
                wall = (time.perf_counter() - wall) * 1000 / args.rounds
                cpu = (time.process_time() - cpu) * 1000 / args.rounds
                print(f"{name:28} {wall:.3f} ms wall, {cpu:.3f} ms CPU per transaction")
    finally:
        for conn in connections.values():
            conn.close()
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("TRUNCATE round_trip_a, round_trip_b")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
